"""`twotower image`, `compile` and `submit`: the same pipeline on Vertex AI."""
from __future__ import annotations

import os
import sys
from shlex import quote

from pipelines.cli.commands.common import config_from
from pipelines.cli.commands.files import _config_inputs
from pipelines.config.schema import ConfigError
from pipelines.data import written
from pipelines.runners import vertex
from pipelines.runners.compile import compile_vertex
from pipelines.vertex import image
from pipelines.vertex.cloud import image_problem


def cmd_image(args) -> int:
    args.no_data = True  # the image depends on the config, not on the data
    cfg = config_from(args)
    if args.tag and image_problem(args.tag):
        raise ConfigError([("--tag", image_problem(args.tag))])
    target = os.path.join(args.out, "Dockerfile")
    written.check({"--out (Dockerfile)": target}, {"--config": args.config}, args.force,
                  make_dirs=True)
    try:
        path = image.write(cfg, args.out)
    except ValueError as exc:
        raise ConfigError([("--out", str(exc))]) from None
    written.record([path], "image")
    tag = quote(args.tag or f"twotower-{cfg.pipeline.name}:{cfg.fingerprint()[:12]}")
    print(f"wrote {path}\nbuild and push it with:\n  docker build -t {tag} {quote(args.out)} "
          f"&& docker push {tag}\n(tag it for your Artifact Registry, e.g. "
          "REGION-docker.pkg.dev/PROJECT/REPOSITORY/NAME:TAG, and compile with the pushed "
          "image's digest: NAME@sha256:...)")
    return 0


def cmd_compile(args) -> int:
    cfg = config_from(args)
    # never over a file the user owns (without --force), an input, or into a model/input folder
    written.check({"--out": args.out}, _config_inputs(args, cfg), args.force, make_dirs=True)
    if args.stage_dir:
        from pipelines.vertex import gcs_on_disk  # TFX: off the CLI's fast path

        gcs_on_disk.register(os.path.abspath(args.stage_dir))
    compile_vertex(cfg, args.out, args.image)
    written.record([args.out], "compile")
    if args.stage_dir:
        bucket = cfg.vertex.pipeline_root[len("gs://"):].split("/")[0]
        print(f"staged under {args.stage_dir}: copy it to Cloud Storage before submitting, e.g. "
              f"gsutil -m rsync -r {quote(os.path.join(args.stage_dir, bucket))} "
              f"{quote('gs://' + bucket)}")
    return 0


def cmd_submit(args) -> int:
    args.no_data = True  # the data is read on Vertex AI, not here
    cfg = config_from(args)
    try:
        done = vertex.submit(cfg, args.spec, wait=args.wait,
                             params=vertex.parse_params(cfg, args.param))
    except RuntimeError as exc:
        print(f"error: twotower submit: {exc}", file=sys.stderr)
        return 1
    if args.wait and done["state"] != "PIPELINE_STATE_SUCCEEDED":
        return 1
    return 0
