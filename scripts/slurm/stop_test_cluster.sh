#!/usr/bin/env bash
# Stops the test Slurm started by start_test_cluster.sh (by its pid files), and the munged it
# started (if it started one) unless --keep-munge is given. Jobs still queued are dropped with the cluster.
set -uo pipefail
DIR=${LIT_TASKS_SLURM_DIR:-/tmp/lit_tasks_slurm}
sudo_=()
[ "$(id -u)" -ne 0 ] && sudo_=(sudo -n)

stop() {  # stop PIDFILE: TERM the process named in the file, wait for it, remove the file
  local file=$1 pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if [ -n "$pid" ] && [ -d "/proc/$pid" ]; then
    "${sudo_[@]}" kill -TERM "$pid"
    for _ in $(seq 30); do [ -d "/proc/$pid" ] || break; sleep 0.5; done
  fi
  "${sudo_[@]}" rm -f "$file"
}

for file in "$DIR"/slurmd-*.pid "$DIR"/slurmctld.pid; do
  stop "$file"
done
if [ "${1:-}" != "--keep-munge" ] && [ -f "$DIR/started-munge" ]; then
  stop /run/munge/munged.pid
  "${sudo_[@]}" rm -f "$DIR/started-munge"
fi
echo "test Slurm stopped"
