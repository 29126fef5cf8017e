"""The TFX pipeline, built once from a config (:mod:`.builder`): its custom components
(:mod:`.components`), the Beam arguments (:mod:`.beam`), the push gate's decision
(:mod:`.gate`), the Tuner step (:mod:`.tuner`) and the generated Transform and Trainer
modules (:mod:`.codegen`).

May import: ``pipelines.config``, ``pipelines.data``, ``pipelines.vertex``, ``trainer``,
``transform``; TFX inside the functions that build (not on the CLI's fast path).
"""
