"""Print what a pipeline run produced: rows per layer, the model's metrics, the highest-risk customers."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from asgard_provider.hooks.iceberg import IcebergHook

LAYERS = ("bronze", "silver", "gold")


def table_counts(hook: IcebergHook) -> dict[str, int]:
    """Return the row count of every table in the bronze/silver/gold namespaces (from snapshot summaries, no scan)."""
    counts: dict[str, int] = {}
    for namespace in LAYERS:
        if (namespace,) not in hook.catalog.list_namespaces():
            continue
        for ident in sorted(hook.catalog.list_tables(namespace)):
            table = hook.catalog.load_table(ident)
            snapshot = table.current_snapshot()
            total = snapshot.summary.additional_properties.get("total-records") if snapshot and snapshot.summary else 0
            counts[".".join(ident)] = int(total or 0)
    return counts


def champion_metrics(model_name: str, alias: str = "champion") -> tuple[str, dict[str, float]]:
    """Return version and run metrics of the model version holding ``alias``."""
    from asgard_provider.hooks.mlflow import MLflowHook

    client = MLflowHook().client()
    version = client.get_model_version_by_alias(model_name, alias)
    run = client.get_run(version.run_id)
    return str(version.version), dict(run.data.metrics)


def top_risk(hook: IcebergHook, table: str, as_of: str, limit: int = 10) -> list[dict[str, Any]]:
    """Return the ``limit`` customers with the highest churn probability scored for ``as_of``."""
    data = hook.load_table(table).scan(row_filter=f"as_of_date == '{as_of}'").to_pandas()
    data = data.sort_values(["churn_probability", "customer_id"], ascending=[False, True]).head(limit)
    return list(data.to_dict(orient="records"))


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m asgard_demo.report --as-of 2025-11-11``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--as-of", required=True, help="the run's as-of date (YYYY-MM-DD)")
    parser.add_argument("--model", default="customer_churn_predictor")
    parser.add_argument("--predictions", default="gold.customer_churn_predictions")
    args = parser.parse_args(argv)
    hook = IcebergHook()
    print("\nRows per layer")
    for name, rows in table_counts(hook).items():
        print(f"  {name:<45} {rows:>12,}")
    version, metrics = champion_metrics(args.model)
    print(f"\nModel {args.model} v{version} (@champion)")
    for key in sorted(metrics):
        print(f"  {key:<20} {metrics[key]:.4f}")
    print(f"\nTop 10 customers most likely to churn ({args.as_of})")
    print(f"  {'customer_id':>11}  {'probability':>11}  risk")
    for row in top_risk(hook, args.predictions, args.as_of):
        print(f"  {row['customer_id']:>11}  {row['churn_probability']:>11.3f}  {row['risk_level']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
