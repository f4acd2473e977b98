#!/usr/bin/env bash
# A real one-node SLURM on localhost for CI: munge + slurmctld + slurmd from
# Debian's packages (22.05), no systemd, no cgroups, no accounting database.
# tests/test_slurm.py submits the workflow to it; .ci/run starts and stops it.
#
#   .ci/slurm-local.sh start    # install if missing, configure, start, smoke-test
#   .ci/slurm-local.sh status   # sinfo and the last jobs
#   .ci/slurm-local.sh stop     # stop the daemons by the pid in their pid files
#
# Needs root (daemons, apt-get). Idempotent: a daemon whose pid file names a live
# process is left alone, so `start` twice is harmless and `stop` stops each once.
#
# What matters for Snakemake's SLURM plugin without accounting:
# - `sacct` (in slurm-client) fails without slurmdbd, so runs must pass
#   `--slurm-status-command squeue`;
# - squeue forgets finished jobs after MinJobAge seconds, so it is 600 here
#   (the plugin itself wants it above 3 x its first status-check delay);
# - `slurmd -N localhost` makes the node name independent of the host name.
set -euo pipefail

PARTITION=${SLURM_CI_PARTITION:-debug}
CONF=/etc/slurm/slurm.conf
PIDS=/run/slurm
LOGS=/var/log/slurm
STATE=/var/lib/slurm
MUNGE_PID=/run/munge/munged.pid
export DEBIAN_FRONTEND=noninteractive

say() { echo "[slurm-local $(date +%T)] $*" >&2; }

running() { # running PIDFILE: the pid it names is alive
  [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

until_ok() { # until_ok SECONDS WHAT COMMAND...: retry COMMAND, fail after SECONDS
  local limit=$1 what=$2
  shift 2
  local deadline=$((SECONDS + limit))
  while ! "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      say "gave up waiting for $what after ${limit}s; logs in $LOGS"
      return 1
    fi
    sleep 0.5
  done
  say "$what: ok"
}

install() {
  local wanted=(munge slurmctld slurmd slurm-client) missing=() p
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  say "apt-get install ${missing[*]}"
  apt-get update -qq
  # Without an init system the packages' postinst cannot start services: fine,
  # this script starts the daemons itself.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

configure() {
  local cpus mem
  cpus=$(nproc)
  # Announcing more memory than slurmd finds would drain the node: take 80 %.
  mem=$(awk '/^MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
  mkdir -p /etc/slurm "$PIDS" "$LOGS" "$STATE/ctld" "$STATE/d"
  chown slurm:slurm "$PIDS" "$LOGS" "$STATE/ctld"
  cat >"$CONF.new" <<EOF
# Written by .ci/slurm-local.sh: one node, localhost, for tests only.
ClusterName=ci
SlurmctldHost=localhost
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# No cgroups in a container: track processes by parent pid, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
# Finished jobs stay in squeue/scontrol for 10 minutes (status without sacct).
MinJobAge=600
InactiveLimit=0
KillWait=5
Waittime=0
SlurmctldPidFile=$PIDS/slurmctld.pid
SlurmdPidFile=$PIDS/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
NodeName=localhost NodeHostname=localhost CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
  if cmp -s "$CONF.new" "$CONF"; then
    rm "$CONF.new"
  else # daemons started with another config must restart to read this one
    stop_slurm
    mv "$CONF.new" "$CONF"
  fi
}

start_munge() {
  mkdir -p /run/munge
  chown munge:munge /run/munge
  if [[ ! -s /etc/munge/munge.key ]]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
  fi
  running $MUNGE_PID || { say "starting munged" && runuser -u munge -- /usr/sbin/munged; }
  until_ok 20 "munge" bash -c 'munge -n | unmunge'
}

start_slurm() {
  running $PIDS/slurmctld.pid || { say "starting slurmctld" && /usr/sbin/slurmctld; }
  until_ok 60 "slurmctld" scontrol ping
  running $PIDS/slurmd.pid || { say "starting slurmd" && /usr/sbin/slurmd -N localhost; }
  until_ok 60 "node localhost idle" bash -c \
    "sinfo -h -n localhost -o %t | grep -qE '^(idle|mix|alloc)'"
}

smoke_test() {
  local job
  job=$(sbatch --parsable --output=/dev/null --wrap true)
  until_ok 60 "test job $job" bash -c "squeue -h -t all -j $job -o %T | grep -qx COMPLETED"
  say "SLURM is up: partition '$PARTITION', $(nproc) CPUs on node localhost"
}

stop_one() { # stop_one PIDFILE: TERM, then KILL after 20 s
  local pidfile=$1 pid
  running "$pidfile" || return 0
  pid=$(cat "$pidfile")
  say "stopping $(basename "$pidfile" .pid) (pid $pid)"
  kill "$pid"
  for _ in $(seq 40); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.5
  done
  say "pid $pid ignored TERM; killing it"
  kill -9 "$pid"
}

stop_slurm() {
  stop_one $PIDS/slurmd.pid
  stop_one $PIDS/slurmctld.pid
}

case ${1:-} in
  start)
    [[ $(id -u) == 0 ]] || { say "needs root"; exit 1; }
    install
    configure
    start_munge
    start_slurm
    smoke_test
    ;;
  stop)
    # The reverse of the start order, each by its own pid file only.
    stop_slurm
    stop_one $MUNGE_PID
    ;;
  status)
    sinfo
    squeue -t all | tail -n 8
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
