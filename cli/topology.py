"""`vigil topology`: the production topology, live on one machine, narrated step by step.

The recipe a deployment follows (deploy/README.md, the Helm chart): a PostgreSQL-backed
`mlflow server`, three replicas of the exported bento on the champion alias, one
monitor, Prometheus + Alertmanager with the production rules. Then drift → alert →
retraining → promotion → all replicas swap → rollback → all swap back.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from cli.common import Commands


def _say(text: str) -> None:
    print(f"==> {text}", flush=True)


def cmd_topology(args: argparse.Namespace) -> int:
    from loadtest.topology.stack import start_topology
    from loadtest.topology.story import run_story

    folder = Path(args.folder) if args.folder else Path(tempfile.mkdtemp(prefix="vigil-topology-"))
    print(f"run folder (logs, configs): {folder}", flush=True)
    with start_topology(folder, _say) as topo:
        story = run_story(topo, _say)
    print("\nswap times (alias moved -> replica serving the new version):")
    for swap in story.swaps:
        print(f"  {swap.replica} -> v{swap.to_version}: {swap.seconds:.2f} s "
              f"(download {swap.download_ms:.0f} ms, load+warm {swap.load_ms:.0f} ms)")
    print(f"rows: answered {story.seen.rows_total()}, on the replicas' /metrics "
          f"{sum(story.rows_served_metrics.values()):.0f}, ingested by the monitor {story.rows_ingested}; "
          f"failed requests {story.seen.failed} of {story.seen.requests}")
    return 0 if story.seen.failed == 0 else 1


def register(commands: Commands) -> None:
    """Add topology."""
    p = commands.add("topology", cmd_topology, "run the production topology live on one machine (~2 min)",
                     __doc__.split("\n\n", 1)[1])
    p.add_argument("--folder", help="run folder for logs and configs (default: a new temporary folder)")
