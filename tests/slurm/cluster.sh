#!/usr/bin/env bash
# A real one-node SLURM cluster for the SLURM test: Debian's munge, slurmctld and slurmd started as
# background daemons (no systemd needed), one node named `hostname -s` with one fake GPU, no
# accounting database (so no sacct: the test profile uses squeue for job status).
#
#   sudo bash tests/slurm/cluster.sh start   # install the packages if missing, configure, start, wait until idle
#   sudo bash tests/slurm/cluster.sh stop    # stop exactly the daemons `start` started (their pid files)
#   source <(bash tests/slurm/cluster.sh env) # SLURM_CONF for sbatch/squeue in this shell
#
# Everything lives in $MODALMERGE_SLURM_DIR (default /tmp/modalmerge-slurm): slurm.conf, gres.conf,
# state, spool, logs, the munge socket and the pid files. The two config files are also copied to
# /etc/slurm (any existing ones are moved aside and put back by `stop`): the `srun` that Snakemake's
# job step runs inside each job drops SLURM_CONF from its environment, so, as on a real cluster,
# the configuration must be where SLURM looks by default. Needs root (daemons, apt-get, /etc).
set -euo pipefail

ACTION=${1:?usage: cluster.sh start|stop|env|status}
DIR=${MODALMERGE_SLURM_DIR:-/tmp/modalmerge-slurm}
NODE=$(hostname -s)
# The node offers more than this machine has (config_overrides), so that the workflow profile's
# per-rule requests (cpus_per_task up to 4, mem_mb up to 8000) fit on a 2-core CI machine.
NODE_CPUS=${MODALMERGE_SLURM_CPUS:-8}
NODE_MEMORY_MB=${MODALMERGE_SLURM_MEMORY_MB:-16000}
# squeue forgets finished jobs after MinJobAge seconds; the plugin trusts squeue for status only if
# MinJobAge >= 3x its first status wait (slurm-init-seconds-before-status-checks), and the test
# reads finished jobs back from squeue --states=all.
MIN_JOB_AGE=${MODALMERGE_SLURM_MIN_JOB_AGE:-900}

log() { echo "[slurm-cluster] $*" >&2; }

install_packages() {
  local missing=()
  for tool in munged slurmctld slurmd sbatch squeue; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if ((${#missing[@]})); then
    log "installing Debian's slurmctld slurmd slurm-client munge (missing: ${missing[*]})"
    local started=$SECONDS
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      slurmctld slurmd slurm-client munge >/dev/null
    log "installed in $((SECONDS - started)) s"
  fi
}

write_config() {
  mkdir -p "$DIR"/{state,spool,logs}
  cat >"$DIR/slurm.conf" <<EOF
# written by tests/slurm/cluster.sh: a one-node test cluster
ClusterName=modalmerge-test
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/logs/slurmctld.log
SlurmdLogFile=$DIR/logs/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=$MIN_JOB_AGE
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
GresTypes=gpu
NodeName=$NODE CPUs=$NODE_CPUS RealMemory=$NODE_MEMORY_MB Gres=gpu:1 State=UNKNOWN
PartitionName=main Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  # a fake GPU: SLURM counts and allocates it, /dev/null stands in for the device file
  cat >"$DIR/gres.conf" <<EOF
AutoDetect=off
NodeName=$NODE Name=gpu File=/dev/null
EOF
  mkdir -p /etc/slurm "$DIR/etc-backup"
  for name in slurm.conf gres.conf; do
    if [[ -e /etc/slurm/$name && ! -e $DIR/etc-backup/$name ]] && ! cmp -s "/etc/slurm/$name" "$DIR/$name"; then
      mv "/etc/slurm/$name" "$DIR/etc-backup/$name"
    fi
    cp "$DIR/$name" "/etc/slurm/$name"
  done
}

restore_etc() {
  for name in slurm.conf gres.conf; do
    if [[ -e $DIR/etc-backup/$name ]]; then
      mv "$DIR/etc-backup/$name" "/etc/slurm/$name"
    elif [[ -e /etc/slurm/$name ]] && cmp -s "/etc/slurm/$name" "$DIR/$name"; then
      rm -f "/etc/slurm/$name"
    fi
  done
}

start_daemon() {  # name pidfile command...
  local name=$1 pidfile=$2
  shift 2
  if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    log "$name already running (pid $(cat "$pidfile"))"
    return
  fi
  "$@"
  for _ in $(seq 50); do
    [[ -s $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null && { log "$name started (pid $(cat "$pidfile"))"; return; }
    sleep 0.2
  done
  log "$name did not start; its log:"
  tail -n 30 "$DIR/logs/$name.log" >&2 || true
  exit 1
}

start() {
  if ((EUID != 0)); then
    log "needs root (it installs packages, starts SLURM's daemons and writes /etc/slurm): run it with sudo"
    exit 1
  fi
  install_packages
  write_config
  export SLURM_CONF=$DIR/slurm.conf
  # munge: a key, socket and pid file of our own
  if [[ ! -s $DIR/munge.key ]]; then
    mungekey --create --keyfile="$DIR/munge.key"
    chmod 600 "$DIR/munge.key"
  fi
  start_daemon munged "$DIR/munged.pid" munged --force --socket="$DIR/munge.socket" --key-file="$DIR/munge.key" \
    --pid-file="$DIR/munged.pid" --log-file="$DIR/logs/munged.log" --seed-file="$DIR/munged.seed"
  start_daemon slurmctld "$DIR/slurmctld.pid" slurmctld -f "$SLURM_CONF"
  start_daemon slurmd "$DIR/slurmd.pid" slurmd -f "$SLURM_CONF"
  local started=$SECONDS state=""
  for _ in $(seq 120); do
    state=$(sinfo -h -N -n "$NODE" -o %t 2>/dev/null || true)
    [[ $state == idle ]] && { log "node $NODE idle after $((SECONDS - started)) s"; return; }
    sleep 0.5
  done
  log "node $NODE is not idle (state '$state'); logs:"
  tail -n 20 "$DIR"/logs/*.log >&2 || true
  exit 1
}

stop() {
  # reverse order; only the pids recorded by `start`
  for name in slurmd slurmctld munged; do
    local pidfile=$DIR/$name.pid
    [[ -f $pidfile ]] || continue
    local pid
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
      log "$name stopped (pid $pid)"
    fi
    rm -f "$pidfile"
  done
  restore_etc
}

case $ACTION in
  start) start ;;
  stop) stop ;;
  env) echo "export SLURM_CONF=$DIR/slurm.conf" ;;
  status) SLURM_CONF=$DIR/slurm.conf sinfo -N -o "%N %t %c %m %G" ;;
  *) echo "usage: cluster.sh start|stop|env|status" >&2; exit 2 ;;
esac
