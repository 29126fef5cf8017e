"""Google Cloud: its rules as data (:mod:`.cloud`, :mod:`.index_shards`), the checks of the
``vertex`` section (:mod:`.checks`), the training image (:mod:`.image`,
:mod:`.image_closure`), Vector Search (:mod:`.vector_search`), the serving container's
server (:mod:`.serve`), BigQuery's dry run (:mod:`.bq_estimate`) and ``gs://`` on a local
folder (:mod:`.gcs_on_disk`).

May import: ``pipelines.config``, ``pipelines.data``, ``trainer``, ``transform``; cloud
clients only inside the functions that call them (importing them takes seconds).
"""
