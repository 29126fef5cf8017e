"""Caching is on by default (TFX's convention): a rerun with unchanged input is served from it.

The demo config, with nothing about caching in it, run twice up to StatisticsGen
on the same files: ML Metadata records the second run's executions as CACHED
(the first's COMPLETE), and no component's output is written again. The same
default holds on Vertex AI (`vertex.enable_caching`).
"""
import os

import pytest

from pipelines.config import Config
from tests.conftest import demo_raw

pytestmark = pytest.mark.e2e


def test_the_cache_is_on_by_default_locally_and_on_vertex(raw_config):
    cfg = Config.from_dict(raw_config)
    assert "enable_cache" not in raw_config.get("pipeline", {})
    assert cfg.pipeline.enable_cache is True and cfg.vertex.enable_caching is True


def test_a_rerun_of_an_unchanged_pipeline_is_served_from_the_cache(tmp_path, small_data):
    from pipelines.builder import paths
    from pipelines.runners.local import cached_components, run_local
    from test_resume import states

    raw = demo_raw(small_data)
    raw["pipeline"].update(root=str(tmp_path), name="cache-test")
    cfg = Config.from_dict(raw)
    root = str(tmp_path / "cache-test")
    run_local(cfg, log=lambda *_: None, until="StatisticsGen")
    outputs = sorted(os.listdir(os.path.join(root, "tfx", "StatisticsGen", "statistics")))
    run_local(cfg, log=lambda *_: None, until="StatisticsGen")
    metadata = paths(root)["metadata"]
    found = states(metadata, "cache-test")
    assert found["ParquetExampleGen"] == ["COMPLETE", "CACHED"], found
    assert found["StatisticsGen"] == ["COMPLETE", "CACHED"], found
    assert cached_components(metadata, "cache-test") == ["ParquetExampleGen", "StatisticsGen"]
    # nothing was computed again: the cached execution reuses the first one's output
    assert sorted(os.listdir(os.path.join(root, "tfx", "StatisticsGen", "statistics"))) == outputs
