"""`twotower neighbours`: query a model deployed with ``vertex.vector_search``."""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys

from pipelines.config.schema import ConfigError
from pipelines.data import written
from pipelines.vertex.vector_search import neighbours


def read_instances(path: str) -> list:
    """One JSON object per line: a query's serving inputs by name (the query tower's
    ``assets.extra/serving_inputs.json`` lists them)."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise ConfigError([("--instances", f"{path} line {number}: not JSON ({exc})")])
            if not isinstance(row, dict):
                raise ConfigError([("--instances", f"{path} line {number}: expected an object "
                                    "of serving inputs, e.g. {\"query_id\": \"c-007\"}")])
            rows.append(row)
    if not rows:
        raise ConfigError([("--instances", f"{path} holds no queries")])
    return rows


def cmd_neighbours(args) -> int:
    """Query embeddings from the endpoint, neighbours from the index: ``query, rank,
    candidate_id, score`` rows (ids exactly as the catalog wrote them)."""
    try:
        with open(args.deployment, encoding="utf-8") as handle:
            deployed = json.load(handle)
        names = [deployed[k] for k in ("endpoint", "index_endpoint", "deployed_index_id")]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError([("--deployment", f"{args.deployment}: not the VectorSearchDeploy "
                            f"step's vector_search.json ({exc})")]) from None
    project, region = names[0].split("/")[1], names[0].split("/")[3]
    instances = read_instances(args.instances)
    if args.out:
        written.check({"--out": args.out}, {"--instances": args.instances}, args.force,
                      make_dirs=True)
    found = neighbours(project, region, *names, instances, args.k,
                       api_endpoint=args.api_endpoint or "")
    out = open(args.out + ".partial", "w", newline="", encoding="utf-8") if args.out \
        else sys.stdout
    writer = csv.writer(out)
    writer.writerow(["query", "rank", "candidate_id", "score"])
    for i, row in enumerate(found):
        query = instances[i].get("query_id", i)
        for rank, (candidate, score) in enumerate(row, 1):
            writer.writerow([query, rank, candidate, repr(score)])
    if args.out:
        out.close()
        os.replace(args.out + ".partial", args.out)
        written.record([args.out], "neighbours")
    return 0


def add_parser(sub, formatter_class=argparse.HelpFormatter) -> None:
    """Registers ``neighbours`` on the CLI's subparsers (``formatter_class``: the CLI's)."""
    p = sub.add_parser("neighbours", help="top-k from a model deployed to Vertex AI Vector "
                                          "Search (vertex.vector_search)",
                       formatter_class=formatter_class)
    p.add_argument("--deployment", required=True,
                   help="the VectorSearchDeploy step's vector_search.json")
    p.add_argument("--instances", required=True,
                   help="JSON lines, one object of serving inputs per query")
    p.add_argument("--k", type=int, default=10, help="neighbours per query")
    p.add_argument("--out", help="a CSV file (default: standard output)")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    p.add_argument("--api-endpoint", metavar="HOST",
                   help="the Vertex AI API host (default: the deployment's region, "
                        "REGION-aiplatform.googleapis.com; the tests point it at a stand-in)")
    p.set_defaults(func=cmd_neighbours)
