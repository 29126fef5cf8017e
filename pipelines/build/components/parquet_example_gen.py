"""ExampleGen over the prepared Parquet splits, keeping every value's type and value.

TFX's own Parquet executor turns any falsy value (``0``, ``0.0``, ``""``)
into a missing feature, so a price of 0 would silently become the feature's
default. This executor converts each row exactly: a null is a missing
feature, a string a bytes feature (``"007"`` stays ``"007"``), an integer an
int64 feature and a float a float feature, whatever their value.
"""
import os

import apache_beam as beam
import tensorflow as tf
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_component_specs


def row_to_example(row):
    """A ``tf.train.Example`` from a ``{column: value}`` Parquet row; None -> absent.

    Raises:
      TypeError: a value is not a string, int, float or None (the prepared
        files hold nothing else).
    """
    features = {}
    for column, value in row.items():
        if value is None:
            continue
        if isinstance(value, str):
            feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"column {column!r}: cannot convert {type(value).__name__} "
                            f"{value!r} to a tf.train.Feature")
        elif isinstance(value, int):
            feature = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        else:
            feature = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
        features[column] = feature
    return tf.train.Example(features=tf.train.Features(feature=features))


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _ParquetToExample(pipeline, exec_properties, split_pattern):  # noqa: N802 (TFX's style)
    pattern = os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY],
                           split_pattern)
    return (pipeline
            | "ReadFromParquet" >> beam.io.ReadFromParquet(pattern)
            | "ToTFExample" >> beam.Map(row_to_example))


class Executor(BaseExampleGenExecutor):
    """Reads each split's Parquet files into tf.Examples with :func:`row_to_example`."""

    def GetInputSourceToExamplePTransform(self):  # noqa: N802 (TFX's API)
        return _ParquetToExample


def parquet_example_gen(input_base, input_config):
    """A FileBasedExampleGen (id ``ParquetExampleGen``) reading with :class:`Executor`."""
    return FileBasedExampleGen(
        input_base=input_base, input_config=input_config,
        custom_executor_spec=executor_spec.BeamExecutorSpec(Executor)).with_id(
            "ParquetExampleGen")
