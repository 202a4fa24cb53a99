#!/usr/bin/env bash
# cluster.sh: a real one-node SLURM cluster on this Debian 12 host, for CI (run as root).
# The verified recipe of docs/slurm.md; tests/workflow/test_slurm.py drives it. All state lives outside
# the repository (/etc/slurm, /run/slurm-local, /var/spool/slurm*, /var/log/slurm).
#   cluster.sh install   apt packages (slurm-wlm, munge [+ slurmdbd, mariadb-server])
#   cluster.sh up        write configs, start daemons, wait until the node is idle, smoke test
#   cluster.sh down      stop exactly the daemons this script started (by recorded PID)
#   cluster.sh status    show recorded daemons and sinfo
# env: SLURM_LOCAL_ACCOUNTING=dbd|none  (dbd: slurmdbd+mariadb, sacct works; none: use squeue)
#      SLURM_LOCAL_GPUS=2               (fake GPUs as gres/gpu, 0 = none)
set -euo pipefail
ACCT=${SLURM_LOCAL_ACCOUNTING:-dbd}
NGPU=${SLURM_LOCAL_GPUS:-2}
RUN=/run/slurm-local            # our PID files and fake GPU device nodes
LOG=/var/log/slurm
H=$(hostname -s)

log() { printf '[slurm-local %s] %s\n' "$(date +%T)" "$*" >&2; }

wait_for() { # wait_for SECONDS WHAT CMD...
  local t=$1 what=$2 i; shift 2
  for ((i = 0; i < t * 5; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  log "timeout after ${t}s waiting for $what"; return 1
}

start() { # start NAME CMD...  (daemon kept in the foreground, so $! is its own PID)
  local name=$1; shift
  nohup "$@" </dev/null >"$LOG/$name.out" 2>&1 &
  echo $! >"$RUN/$name.pid"
  log "$name started, pid $!"
}

stop() { # stop NAME: SIGTERM the recorded PID, wait, SIGKILL after 30 s
  local f=$RUN/$1.pid pid i
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then log "$1 ($pid) ignored SIGTERM, SIGKILL"; kill -9 "$pid"; fi
  fi
  rm -f "$f"; log "$1 ($pid) stopped"
}

install() {
  local pkgs="slurm-wlm munge"
  [ "$ACCT" = dbd ] && pkgs="$pkgs slurmdbd mariadb-server"
  apt-get update -qq
  # policy-rc.d in containers/VMs keeps the packages' services from starting: we start them.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
}

configure() {
  mkdir -p /etc/slurm "$RUN" "$LOG" /var/spool/slurmctld /var/spool/slurmd /run/munge
  chown munge:munge /run/munge
  [ -s /etc/munge/munge.key ] || mungekey --create --force # Debian's postinst normally made it
  chown munge:munge /etc/munge/munge.key && chmod 600 /etc/munge/munge.key
  local node gres="" acct_lines
  node=$(slurmd -C | head -1) # "NodeName=<host> CPUs=2 ... RealMemory=24105"
  if [ "$NGPU" -gt 0 ]; then
    # gres/gpu needs device files; file-less GPUs are dropped ("count reported lower than
    # configured (0 < 2)" -> node INVAL). Char devices 1:3 (= /dev/null) stand in for GPUs.
    local i
    for ((i = 0; i < NGPU; i++)); do
      [ -c "$RUN/gpu$i" ] || mknod -m 666 "$RUN/gpu$i" c 1 3
    done
    printf 'AutoDetect=off\nNodeName=%s Name=gpu File=%s/gpu[0-%d]\n' "$H" "$RUN" $((NGPU - 1)) \
      >/etc/slurm/gres.conf
    gres="Gres=gpu:$NGPU"
  else
    rm -f /etc/slurm/gres.conf
  fi
  if [ "$ACCT" = dbd ]; then
    acct_lines="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost"
  else
    acct_lines="AccountingStorageType=accounting_storage/none"
  fi
  cat >/etc/slurm/slurm.conf <<EOF
ClusterName=ci
SlurmctldHost=$H(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
MailProg=/bin/true
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
# no cgroups: they fail or are absent in containers/VMs
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
$acct_lines
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG/jobcomp.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
# squeue shows finished jobs for MinJobAge s; the snakemake plugin's squeue mode needs >= 3x
# its first-check delay
MinJobAge=300
GresTypes=gpu
$node NodeAddr=127.0.0.1 $gres State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  if [ "$ACCT" = dbd ]; then
    cat >/etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm-ci
StorageLoc=slurm_acct_db
PidFile=/run/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
EOF
    chmod 600 /etc/slurm/slurmdbd.conf # slurmdbd refuses a world-readable file
  fi
}

up() {
  local fresh=0
  [ -z "$(ls -A /var/spool/slurmctld 2>/dev/null)" ] && fresh=1
  configure
  start munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground
  wait_for 10 munged sh -c 'munge -n | unmunge'
  if [ "$ACCT" = dbd ]; then
    mkdir -p /run/mysqld && chown mysql:root /run/mysqld
    start mariadbd /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1
    wait_for 60 mariadb mariadb -e 'SELECT 1'
    # fresh controller state -> fresh job DB (job ids restart at 1)
    [ "$fresh" = 1 ] && mariadb -e 'DROP DATABASE IF EXISTS slurm_acct_db'
    mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
      CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm-ci';
      ALTER USER 'slurm'@'localhost' IDENTIFIED BY 'slurm-ci';
      GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
    start slurmdbd /usr/sbin/slurmdbd -D
    wait_for 30 slurmdbd sacctmgr -n show cluster
  fi
  start slurmctld /usr/sbin/slurmctld -D -i # -i: ignore unreadable state files
  wait_for 30 slurmctld sh -c 'scontrol ping | grep -q UP'
  start slurmd /usr/sbin/slurmd -D
  wait_for 30 "node registration" sh -c 'sinfo -h -N -o %T | grep -Eq "idle|drain|mixed|alloc"'
  if sinfo -h -N -o %T | grep -q drain; then # a DRAIN/INVAL survives in the state dir
    scontrol update nodename="$H" state=resume
  fi
  wait_for 30 "node idle" sh -c 'sinfo -h -N -o %T | grep -q idle'
  sinfo
  srun -t 1 hostname >/dev/null # smoke test: a job step runs
  log "cluster up (accounting=$ACCT, gpus=$NGPU)"
}

down() {
  local d
  for d in slurmd slurmctld slurmdbd mariadbd munged; do stop "$d"; done
  # With a slurm.conf but no controller every scontrol call waits ~10 s, and the SLURM executor
  # plugin runs one whenever snakemake starts; `up` writes the file again. Only ours is removed.
  if grep -qx 'ClusterName=ci' /etc/slurm/slurm.conf 2>/dev/null; then rm -f /etc/slurm/slurm.conf; fi
}

status() {
  local f
  for f in "$RUN"/*.pid; do
    [ -e "$f" ] || continue
    if kill -0 "$(cat "$f")" 2>/dev/null; then echo "$(basename "$f" .pid) $(cat "$f") running"
    else echo "$(basename "$f" .pid) $(cat "$f") DEAD (see $LOG/$(basename "$f" .pid).out)"; fi
  done
  sinfo 2>/dev/null || true
}

case "${1:-}" in
  install | up | down | status) "$1" ;;
  *) echo "usage: $0 install|up|down|status" >&2; exit 2 ;;
esac
