"""Runs a generated ``preprocessing_fn`` through tensorflow_transform on rows in memory."""
import importlib.util
import os
import sys
import tempfile


def load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as TFX does: an importable module, so Beam can pickle by ref
    spec.loader.exec_module(module)
    return module


def run_preprocessing(preprocessing_fn, rows, feature_spec, work_dir=None, extra=()):
    """Analyses ``rows`` and transforms them (and each list of ``extra`` rows, as TFX
    transforms splits it did not analyse); returns (transformed rows, output) or, with
    ``extra``, (transformed rows, [transformed extra rows...], output).

    ``feature_spec`` maps column -> tf.io feature spec, as TFX's schema would.
    """
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

    work_dir = work_dir or tempfile.mkdtemp()
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(
        feature_spec))
    with tft_beam.Context(temp_dir=os.path.join(work_dir, "tmp"), force_tf_compat_v1=False):
        (transformed, _), transform_fn = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(
            preprocessing_fn, output_record_batches=False)
        others = [((more, metadata), transform_fn) | f"Transform{i}" >> tft_beam.TransformDataset(
            output_record_batches=False) for i, more in enumerate(extra)]
        out = os.path.join(work_dir, "transform_output")
        _ = transform_fn | tft_beam.WriteTransformFn(out)
    # The raw schema, as TFX's Transform writes it beside the transform graph.
    metadata_io.write_metadata(metadata, os.path.join(out, tft.TFTransformOutput.RAW_METADATA_DIR))
    if extra:
        return transformed, [o[0] for o in others], tft.TFTransformOutput(out)
    return transformed, tft.TFTransformOutput(out)
