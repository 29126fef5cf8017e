"""The custom TFX components, one module each; every executor the training image must hold
lives here (:mod:`pipelines.vertex.image_closure` finds them by reading this folder).

May import: what :mod:`pipelines.build` may, and ``pipelines.build.gate``.
"""
