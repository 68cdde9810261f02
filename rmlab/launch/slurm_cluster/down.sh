#!/usr/bin/env bash
# Stop the local SLURM cluster started by up.sh (state is saved; up.sh starts it again).
set -u
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
command -v scontrol >/dev/null && scontrol shutdown >/dev/null 2>&1
for _ in $(seq 50); do alive /run/slurmctld.pid || alive /run/slurmd.pid || break; sleep 0.2; done
alive /run/slurmdbd.pid && kill "$(cat /run/slurmdbd.pid)"
command -v mariadb-admin >/dev/null && mariadb-admin shutdown >/dev/null 2>&1
alive /run/munge/munged.pid && kill "$(cat /run/munge/munged.pid)"
echo "slurm-down: stopped"
exit 0
