"""Key rotation as a plain script, for cron or a Kubernetes CronJob.

    # crontab: rotate on the 1st of every month at 03:00, retire old versions a day later
    0 3 1 * *  cd /srv/results && python rotation_script.py rotate  >> rotation.log 2>&1
    0 3 2 * *  cd /srv/results && python rotation_script.py retire  >> rotation.log 2>&1

The profile comes from the config file as usual ($SEALED_RESULTS_CONFIG, ./sealed-results.toml,
$SEALED_RESULTS_PROFILE); credentials from the environment (VAULT_TOKEN or AppRole ids, the AWS
chain). A rotation killed halfway (node drained, OOM) finishes on the next run without a second
key version: run it again. The exit code is non-zero when anything failed or was refused, so
cron's mail or the CronJob's status tells you. Output names objects only by opaque reference.
"""

from __future__ import annotations

import json
import sys

import sealed_results as sr
from sealed_results import maintenance


def main(step: str, profile: str | None = None) -> int:
    handler = sr.from_profile(profile)
    if step == "rotate":
        report = maintenance.rotate(handler, apply=True)
    elif step == "retire":
        report = maintenance.retire(handler, apply=True)  # refuses while old versions remain
    elif step == "verify":
        report = maintenance.verify(handler)
    else:
        print("usage: rotation_script.py rotate|retire|verify [PROFILE]", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), default=str))
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "", *sys.argv[2:3]))
