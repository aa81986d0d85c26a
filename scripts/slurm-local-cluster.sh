#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, from Debian packages, for tests and for trying
# curate's Slurm path:  scripts/slurm-local-cluster.sh up|down|status [DIR]
#
#   up      install (if missing) slurm-wlm, slurmdbd, mariadb-server and munge; write slurm.conf and
#           slurmdbd.conf under DIR/etc; start munged, MariaDB, slurmdbd, slurmctld and slurmd; register
#           the cluster; wait until the node is idle and sacct answers. Prints the SLURM_CONF to export.
#   down    stop exactly the daemons `up` started (by the pids in DIR/run), newest first.
#   status  show which of those daemons run, sinfo and sacct.
#
# DIR defaults to $CURATE_SLURM_DIR or /tmp/curate-slurm. Every daemon keeps its state, sockets,
# logs and pid files under DIR and listens on its own ports, so the machine's own services (if any)
# are left alone. MAX_ARRAY_SIZE (default 1001) and NODE_CPUS (default 8, oversubscribing the
# cores so light tasks run side by side) tune slurm.conf.
set -euo pipefail

cmd="${1:-}"
DIR="$(realpath -m "${2:-${CURATE_SLURM_DIR:-/tmp/curate-slurm}}")"
MAX_ARRAY_SIZE="${MAX_ARRAY_SIZE:-1001}"
NODE_CPUS="${NODE_CPUS:-8}"
PORT_BASE="${SLURM_PORT_BASE:-16817}"
CTLD_PORT=$PORT_BASE
SLURMD_PORT=$((PORT_BASE + 1))
DBD_PORT=$((PORT_BASE + 2))
DB_PORT=$((PORT_BASE + 3))
HOST="$(hostname -s)"
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

log() { echo "[slurm-local] $*" >&2; }

need_packages() {
  local missing=()
  command -v slurmctld >/dev/null || missing+=(slurmctld slurm-client)
  command -v slurmd >/dev/null || missing+=(slurmd)
  command -v slurmdbd >/dev/null || missing+=(slurmdbd)
  command -v munged >/dev/null || missing+=(munge)
  command -v mariadbd >/dev/null || missing+=(mariadb-server)
  command -v sbatch >/dev/null || missing+=(slurm-client)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

pid_of() { [ -s "$DIR/run/$1.pid" ] && cat "$DIR/run/$1.pid" || true; }
alive() { local p; p="$(pid_of "$1")"; [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ]; then
      log "timed out waiting for $what; logs in $DIR/log"
      tail -n 20 "$DIR"/log/*.log >&2 || true
      return 1
    fi
    sleep 0.5
  done
}

write_configs() {
  mkdir -p "$DIR"/{etc,run,log,state,spool,munge,mysql}
  chmod 711 "$DIR/munge"
  local mem_mb
  mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
  cat >"$DIR/etc/slurm.conf" <<EOF
# Written by scripts/slurm-local-cluster.sh: a single-node cluster for curate's tests.
ClusterName=curatelocal
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket.2
CryptoType=crypto/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
DefMemPerCPU=256
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=defer_batch=0,sched_min_interval=100000
JobRequeue=1
KillWait=10
MinJobAge=120
MaxArraySize=$MAX_ARRAY_SIZE
MaxJobCount=50000
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$DIR/munge/munge.socket.2
AccountingStorageEnforce=associations
NodeName=$HOST CPUs=$NODE_CPUS RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$DIR/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket.2
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=curate-local
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$DIR/etc/slurmdbd.conf"
}

start_munge() {
  alive munged && return
  [ -s "$DIR/munge/munge.key" ] || dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$DIR/munge/munge.key"
  munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket.2" \
    --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munge.seed"
  wait_for 20 munged test -S "$DIR/munge/munge.socket.2"
}

start_mariadb() {
  alive mariadbd && return
  if [ ! -d "$DIR/mysql/mysql" ]; then
    mariadb-install-db --user=root --datadir="$DIR/mysql" --auth-root-authentication-method=socket \
      >"$DIR/log/mariadb-install.log" 2>&1
  fi
  mariadbd --user=root --datadir="$DIR/mysql" --socket="$DIR/run/mysqld.sock" --port="$DB_PORT" \
    --bind-address=127.0.0.1 --pid-file="$DIR/run/mariadbd.pid" --log-error="$DIR/log/mariadb.log" \
    --skip-name-resolve --innodb-buffer-pool-size=64M >/dev/null 2>&1 &
  wait_for 60 MariaDB mariadb --socket="$DIR/run/mysqld.sock" -e "select 1"
  mariadb --socket="$DIR/run/mysqld.sock" <<'EOF'
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'curate-local';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'curate-local';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF
}

up() {
  need_packages
  write_configs
  export SLURM_CONF="$DIR/etc/slurm.conf"
  start_munge
  start_mariadb
  alive slurmdbd || slurmdbd
  wait_for 60 slurmdbd sacctmgr -i list cluster
  if ! sacctmgr -n -P list cluster format=cluster | grep -qx curatelocal; then
    sacctmgr -i add cluster curatelocal >/dev/null
  fi
  sacctmgr -i add account curate Cluster=curatelocal Description=curate Organization=curate >/dev/null 2>&1 || true
  sacctmgr -i add user root Account=curate >/dev/null 2>&1 || true
  alive slurmctld || slurmctld -i
  wait_for 60 slurmctld scontrol ping
  alive slurmd || slurmd -b
  wait_for 60 "the node to be idle" bash -c "sinfo -h -N -o '%t' | grep -qx idle"
  wait_for 60 sacct sacct -n -X -S now
  log "up: export SLURM_CONF=$SLURM_CONF"
  echo "export SLURM_CONF=$SLURM_CONF"
}

down() {
  local name pid
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
    name=${DAEMONS[$i]}
    pid="$(pid_of "$name")"
    [ -n "$pid" ] || continue
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid" || true
      log "stopped $name (pid $pid)"
    fi
    rm -f "$DIR/run/$name.pid"
  done
}

status() {
  export SLURM_CONF="$DIR/etc/slurm.conf"
  local rc=0
  for name in "${DAEMONS[@]}"; do
    if alive "$name"; then echo "$name: running (pid $(pid_of "$name"))"; else echo "$name: stopped"; rc=1; fi
  done
  [ $rc = 0 ] && { sinfo; sacct -n -X -S now-1hour | tail -n 5; }
  return $rc
}

case "$cmd" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status [DIR]" >&2; exit 2 ;;
esac
