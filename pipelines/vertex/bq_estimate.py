"""What the BigQuery split queries would scan, from a dry run at compile time.

``twotower compile`` prints one line: the bytes each split's query would process
(BigQuery's dry run, ``QueryJobConfig(dry_run=True)``: the query is checked and
priced, nothing runs, nothing is billed), and their sum, which is what one run's
ExampleGen is billed on demand. It needs Application Default Credentials with
``bigquery.jobs.create`` in ``vertex.project``; without credentials it says so in
one line (``no credentials: size not estimated``) and the compile goes on; a dry
run BigQuery refuses (a missing table, no permission, no network) is one line with
BigQuery's reason, and the compile goes on: the spec does not depend on it.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

SCOPE = "https://www.googleapis.com/auth/bigquery"
NO_CREDENTIALS = "BigQuery: no credentials: size not estimated"


def size(count: int) -> str:
    """Bytes in binary units: ``1.5 GiB``."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def line(per_split: Dict[str, int]) -> str:
    """The printed line: the total, then each split's bytes, in the queries' order."""
    parts = ", ".join(f"{split} {size(n)}" for split, n in per_split.items())
    return (f"BigQuery dry run: the split queries would process {size(sum(per_split.values()))} "
            f"per run ({parts}), billed on demand per TiB")


def estimate(project: str, queries: Dict[str, str], log: Callable[[str], None],
             client=None) -> Optional[Dict[str, int]]:
    """Dry-runs each split's query in ``project``; logs one line; returns the bytes per split
    (None when not estimated). Never raises: the estimate is a note, not a check.

    ``client``: a ``google.cloud.bigquery.Client`` (default: one with the Application
    Default Credentials, or none found: :data:`NO_CREDENTIALS`).
    """
    from google.api_core import exceptions  # the Google Cloud client: off the CLI's fast path
    # the Google Cloud client: off the CLI's fast path
    from google.auth import exceptions as auth_exceptions

    if client is None:
        import google.auth  # the Google Cloud client: off the CLI's fast path

        try:
            credentials, _ = google.auth.default(scopes=[SCOPE])
        except auth_exceptions.DefaultCredentialsError:
            log(NO_CREDENTIALS)
            return None
        from google.cloud import bigquery  # the Google Cloud client: off the CLI's fast path

        client = bigquery.Client(project=project, credentials=credentials)
    from google.cloud import bigquery  # the Google Cloud client: off the CLI's fast path

    config = bigquery.QueryJobConfig(dry_run=True, use_query_cache=False)
    out = {}
    try:
        for split, query in queries.items():
            out[split] = int(client.query(query, job_config=config).total_bytes_processed or 0)
    except (exceptions.GoogleAPIError, auth_exceptions.GoogleAuthError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log(f"BigQuery dry run of the {split} query failed ({type(exc).__name__}: {reason}): "
            "size not estimated")
        return None
    log(line(out))
    return out
