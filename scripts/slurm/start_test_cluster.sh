#!/usr/bin/env bash
# A real one-host Slurm for the tests in tests/slurm/: munged, slurmctld and two slurmd
# (nodes node1 and node2, 1 CPU each, CPU only) on this machine. Idempotent: installs the Debian
# packages `slurm-wlm munge` when missing (needs root or passwordless sudo), writes its own
# slurm.conf and does nothing more when the cluster already answers.
#
#   bash scripts/slurm/start_test_cluster.sh        # then: SLURM_CONF=/tmp/lit_tasks_slurm/slurm.conf sinfo
#   bash scripts/slurm/stop_test_cluster.sh         # stops what this script started
#
# Everything lives in $LIT_TASKS_SLURM_DIR (default /tmp/lit_tasks_slurm): slurm.conf, state,
# spool folders and logs (log/). It never touches /etc/slurm, so it cannot disturb a real
# cluster's configuration; the tests point SLURM_CONF at this folder's slurm.conf.
set -euo pipefail
DIR=${LIT_TASKS_SLURM_DIR:-/tmp/lit_tasks_slurm}
PORT=${LIT_TASKS_SLURM_PORT:-16817}   # slurmctld; the two slurmd listen on PORT+1 and PORT+2
export SLURM_CONF=$DIR/slurm.conf

sudo_=()
if [ "$(id -u)" -ne 0 ]; then
  if sudo -n true 2>/dev/null; then sudo_=(sudo -n); else
    echo "start_test_cluster: needs root or passwordless sudo to install and start Slurm" >&2; exit 1
  fi
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  if ! command -v apt-get >/dev/null; then
    echo "start_test_cluster: slurmctld/munged are not installed and apt-get is not available" >&2; exit 1
  fi
  echo "installing slurm-wlm and munge (apt-get)..."
  "${sudo_[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_[@]}" apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

cluster_answers() {
  timeout 10 sinfo -h -o '%T' 2>/dev/null | grep -qE 'idle|mixed|alloc'
}
if [ -f "$SLURM_CONF" ] && cluster_answers; then
  echo "test Slurm already running (SLURM_CONF=$SLURM_CONF)"; exit 0
fi

# -- munge: one key, one daemon (reused when one already answers) ---------------------------
if ! (munge -n | unmunge) >/dev/null 2>&1; then
  "${sudo_[@]}" mkdir -p /run/munge /var/lib/munge /var/log/munge
  "${sudo_[@]}" chown munge:munge /run/munge /var/lib/munge /var/log/munge
  if [ ! -s /etc/munge/munge.key ]; then
    "${sudo_[@]}" mkdir -p /etc/munge
    "${sudo_[@]}" dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    "${sudo_[@]}" chown munge:munge /etc/munge/munge.key
    "${sudo_[@]}" chmod 400 /etc/munge/munge.key
  fi
  "${sudo_[@]}" runuser -u munge -- /usr/sbin/munged
  "${sudo_[@]}" mkdir -p "$DIR" && "${sudo_[@]}" touch "$DIR/started-munge"  # ours to stop
  for _ in $(seq 20); do (munge -n | unmunge) >/dev/null 2>&1 && break; sleep 0.5; done
fi

# -- slurm.conf ------------------------------------------------------------------------------
"${sudo_[@]}" mkdir -p "$DIR"/state "$DIR"/spool "$DIR"/log
host=$(hostname -s)
cat > /tmp/lit_tasks_slurm.conf.$$ <<EOF
# written by scripts/slurm/start_test_cluster.sh: a one-host test cluster, two CPU nodes
ClusterName=littasks
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# a requeued job may start again after cred_expire seconds (default 120)
AuthInfo=cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
# containers have no usable cgroups: plain process tracking, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
# schedule often: a requeued test job starts again seconds after it becomes eligible
SchedulerParameters=sched_interval=2,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobRequeue=1
ReturnToService=2
KillWait=10
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=node1 NodeHostname=$host NodeAddr=127.0.0.1 Port=$((PORT + 1)) CPUs=1 State=UNKNOWN
NodeName=node2 NodeHostname=$host NodeAddr=127.0.0.1 Port=$((PORT + 2)) CPUs=1 State=UNKNOWN
PartitionName=debug Nodes=node1,node2 Default=YES MaxTime=INFINITE State=UP
EOF
"${sudo_[@]}" mv /tmp/lit_tasks_slurm.conf.$$ "$SLURM_CONF"
"${sudo_[@]}" chmod 644 "$SLURM_CONF"

# -- daemons (a stale one from an earlier start is stopped first) -----------------------------
bash "$(dirname "$0")/stop_test_cluster.sh" --keep-munge >/dev/null 2>&1 || true
"${sudo_[@]}" env SLURM_CONF="$SLURM_CONF" /usr/sbin/slurmctld -c -i
for node in node1 node2; do
  "${sudo_[@]}" env SLURM_CONF="$SLURM_CONF" /usr/sbin/slurmd -N "$node"
done

for _ in $(seq 60); do
  if cluster_answers && [ "$(sinfo -h -o '%D %T' | awk '$2 ~ /idle|mixed|alloc/ {n += $1} END {print n + 0}')" -ge 2 ]; then
    echo "test Slurm running: 2 nodes (SLURM_CONF=$SLURM_CONF)"; sinfo; exit 0
  fi
  sleep 1
done
echo "start_test_cluster: the nodes did not come up; logs in $DIR/log:" >&2
tail -n 20 "$DIR"/log/*.log >&2 || true
exit 1
