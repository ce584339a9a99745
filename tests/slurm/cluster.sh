#!/usr/bin/env bash
# Bring up / tear down a throw-away one-node Slurm cluster (Debian 12, Slurm
# 22.05) on the local machine, as root, without systemd.  Meant for CI tests
# that run a Snakemake workflow through snakemake-executor-plugin-slurm.
#
# Usage: tests/slurm/cluster.sh {start|stop|status|env|logs}
#
#   start   install the packages if missing, write the config, start munged,
#           slurmctld and slurmd, wait until the node is idle; prints the
#           `export SLURM_CONF=...` line to use.  Idempotent.
#   stop    cancel remaining jobs, stop every daemon started by `start` (by
#           its pid file).  Idempotent.
#   status  show daemon/node/queue state; exit 0 only if the cluster is usable.
#   env     print the `export SLURM_CONF=...` line.
#   logs    print the tails of all daemon logs.
#
# Environment:
#   SLURM_TEST_DIR        state directory (conf, spool, logs, pids, munge socket)
#                         default /tmp/scembed-slurm
#   SLURM_TEST_CTLD_PORT  slurmctld port (default 6817)
#   SLURM_TEST_SLURMD_PORT slurmd port   (default 6818)
#   SLURM_TEST_WAIT       seconds to wait for the node to become idle (60)
#   SLURM_TEST_LINK_ETC   1 (default): symlink /etc/slurm/slurm.conf to the
#                         generated config (see link_default_conf); 0: don't
#
# No slurmdbd is run: `sacct`/`sacctmgr` do not work on this cluster.  See
# tests/slurm/README.md for the Snakemake settings that cope with that.

set -euo pipefail

DIR="${SLURM_TEST_DIR:-/tmp/scembed-slurm}"
CTLD_PORT="${SLURM_TEST_CTLD_PORT:-6817}"
SLURMD_PORT="${SLURM_TEST_SLURMD_PORT:-6818}"
WAIT_IDLE="${SLURM_TEST_WAIT:-60}"

ETC="$DIR/etc"
RUN="$DIR/run"
LOG="$DIR/log"
MUNGE_DIR="$DIR/munge"
MUNGE_SOCKET="$MUNGE_DIR/munge.socket.2"
MUNGE_KEY=/etc/munge/munge.key
DEFAULT_CONF=/etc/slurm/slurm.conf
LINK_ETC="${SLURM_TEST_LINK_ETC:-1}"
export SLURM_CONF="$ETC/slurm.conf"

MUNGED_PID="$MUNGE_DIR/munged.pid"
CTLD_PID="$RUN/slurmctld.pid"
SLURMD_PID="$RUN/slurmd.pid"

log() { echo "[slurm-test] $*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

need_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root"
}

# pid from a pid file if that process is alive and is the daemon named after
# the pid file (munged.pid -> munged), else nothing.  The name check keeps a
# stale pid file from pointing `stop` at an unrelated process.
live_pid() {
    local f="$1" pid comm
    [ -s "$f" ] || return 1
    pid="$(tr -dc '0-9' <"$f")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
    [ "$comm" = "$(basename "$f" .pid)" ] || return 1
    echo "$pid"
}

print_env() {
    echo "export SLURM_CONF=$SLURM_CONF"
}

show_logs() {
    local f
    for f in "$LOG/slurmctld.log" "$LOG/slurmd.log" "$MUNGE_DIR/munged.log"; do
        if [ -f "$f" ]; then
            echo "===== $f (last 40 lines) =====" >&2
            tail -n 40 "$f" >&2 || true
        fi
    done
}

fail_with_logs() {
    log "ERROR: $*"
    show_logs
    exit 1
}

install_packages() {
    local missing=0 b
    for b in munged munge slurmctld slurmd sbatch squeue sinfo scontrol; do
        command -v "$b" >/dev/null 2>&1 || missing=1
    done
    [ "$missing" -eq 0 ] && return 0
    log "installing slurmctld slurmd slurm-client munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    timeout -k 10 300 apt-get update -qq ||
        die "apt-get update failed"
    timeout -k 10 600 apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        slurmctld slurmd slurm-client munge >/dev/null ||
        die "apt-get install failed"
    for b in munged munge slurmctld slurmd sbatch squeue sinfo scontrol; do
        command -v "$b" >/dev/null 2>&1 || die "$b still missing after install"
    done
}

ensure_hostname_resolves() {
    local h
    h="$(hostname)"
    if ! getent hosts "$h" >/dev/null 2>&1; then
        log "adding '$h' to /etc/hosts"
        echo "127.0.0.1 $h" >>/etc/hosts
    fi
    getent hosts "$h" >/dev/null 2>&1 || die "hostname '$h' does not resolve"
}

ensure_munge_key() {
    id munge >/dev/null 2>&1 || die "user 'munge' missing (munge package?)"
    mkdir -p /etc/munge
    if [ ! -s "$MUNGE_KEY" ]; then
        log "creating $MUNGE_KEY"
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile="$MUNGE_KEY" --force
        else
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
        fi
    fi
    chown munge:munge /etc/munge "$MUNGE_KEY"
    chmod 700 /etc/munge
    chmod 400 "$MUNGE_KEY"
}

write_config() {
    local host nodeline mem
    host="$(hostname)"
    # e.g. NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2
    #      ThreadsPerCore=1 RealMemory=24152
    nodeline="$(slurmd -C | grep '^NodeName=' | head -n1)"
    [ -n "$nodeline" ] || die "slurmd -C printed no NodeName line"
    # Leave some slack: slurmd drains a node whose RealMemory is above what
    # it detects, and the detected value can wobble by a few MB.
    mem="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$nodeline")"
    if [ -n "$mem" ] && [ "$mem" -gt 1024 ]; then
        nodeline="$(sed "s/RealMemory=[0-9]*/RealMemory=$((mem - 256))/" <<<"$nodeline")"
    fi

    cat >"$SLURM_CONF" <<EOF
# generated by tests/slurm/cluster.sh -- throw-away CI cluster
ClusterName=scembedci
SlurmctldHost=$host
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no systemd / cgroups needed
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# no slurmdbd: sacct/sacctmgr are unusable, squeue is the status source
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
SchedulerType=sched/backfill
# start batch jobs right away (default batch_sched_delay=3 adds ~2 s/job)
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
# finished jobs stay visible to squeue for MinJobAge seconds; must be
# >= 3 * slurm-init-seconds-before-status-checks of the Snakemake plugin
MinJobAge=300
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
Waittime=0
GresTypes=gpu
$nodeline Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$host Default=NO MaxTime=INFINITE State=UP
EOF

    # Fake GPU.  A count-only line (Name=gpu Count=1) is NOT enough: slurmd
    # 22.05 then reports gpu count 0 and the node goes INVALID_REG/DRAIN
    # ("gres/gpu count reported lower than configured (0 < 1)").  With a
    # device file it counts one GPU; /dev/null exists everywhere and, with
    # TaskPlugin=task/none, nothing ever tries to constrain it.
    cat >"$ETC/gres.conf" <<EOF
AutoDetect=off
NodeName=$host Name=gpu File=/dev/null
EOF
    # no SPANK plugins
    : >"$ETC/plugstack.conf"
}

# snakemake-executor-plugin-slurm-jobstep (0.6.x) runs each rule inside the
# batch job as `srun -n1 ...` with every SLURM_* variable removed from the
# environment -- SLURM_CONF included.  That inner srun then only finds the
# config at the compiled-in default path (/etc/slurm/slurm.conf) and otherwise
# dies with "Could not establish a configuration source".  So point the
# default path at our config with a symlink (only if nothing else is there),
# and remove that symlink again on stop.
link_default_conf() {
    [ "$LINK_ETC" = 1 ] || return 0
    if [ -e "$DEFAULT_CONF" ] && [ ! -L "$DEFAULT_CONF" ]; then
        log "WARNING: $DEFAULT_CONF exists and is not ours; srun steps that" \
            "lose SLURM_CONF (snakemake jobstep) will use it"
        return 0
    fi
    mkdir -p "$(dirname "$DEFAULT_CONF")"
    ln -sfn "$SLURM_CONF" "$DEFAULT_CONF"
}

unlink_default_conf() {
    if [ -L "$DEFAULT_CONF" ] &&
        [ "$(readlink "$DEFAULT_CONF")" = "$SLURM_CONF" ]; then
        rm -f "$DEFAULT_CONF"
    fi
}

start_munged() {
    if live_pid "$MUNGED_PID" >/dev/null; then
        return 0
    fi
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock" "$MUNGED_PID"
    chown munge:munge "$MUNGE_DIR"
    chmod 755 "$MUNGE_DIR"
    log "starting munged"
    timeout -k 5 30 runuser -u munge -- munged \
        --socket="$MUNGE_SOCKET" \
        --key-file="$MUNGE_KEY" \
        --pid-file="$MUNGED_PID" \
        --log-file="$MUNGE_DIR/munged.log" \
        --seed-file="$MUNGE_DIR/munged.seed" ||
        fail_with_logs "munged failed to start"
    local i
    for i in $(seq 1 20); do
        if munge -n --socket="$MUNGE_SOCKET" 2>/dev/null |
            unmunge --socket="$MUNGE_SOCKET" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.5
    done
    fail_with_logs "munge round trip failed"
}

start_slurmctld() {
    if live_pid "$CTLD_PID" >/dev/null; then
        return 0
    fi
    log "starting slurmctld"
    # -c: do not recover old job state (each start is a fresh cluster)
    timeout -k 5 30 slurmctld -c -f "$SLURM_CONF" ||
        fail_with_logs "slurmctld failed to start"
    local i
    for i in $(seq 1 60); do
        if timeout -k 2 5 scontrol ping 2>/dev/null | grep -q 'is UP'; then
            return 0
        fi
        sleep 0.5
    done
    fail_with_logs "slurmctld did not answer 'scontrol ping' within 30 s"
}

start_slurmd() {
    if live_pid "$SLURMD_PID" >/dev/null; then
        return 0
    fi
    log "starting slurmd"
    timeout -k 5 30 slurmd -f "$SLURM_CONF" ||
        fail_with_logs "slurmd failed to start"
}

node_state() {
    timeout -k 2 5 sinfo -h -N -n "$(hostname)" -o '%T' 2>/dev/null | head -n1
}

wait_node_idle() {
    local deadline state resumed=0
    deadline=$((SECONDS + WAIT_IDLE))
    while [ "$SECONDS" -lt "$deadline" ]; do
        state="$(node_state || true)"
        case "$state" in
        idle | mixed | allocated)
            log "node $(hostname) is $state"
            return 0
            ;;
        inval*)
            # wrong node/GRES definition: will not fix itself
            timeout -k 2 5 scontrol show node "$(hostname)" >&2 || true
            fail_with_logs "node registration rejected (state '$state')"
            ;;
        *drain* | down* | *fail*)
            if [ "$resumed" -eq 0 ]; then
                log "node state '$state', trying to resume it"
                timeout -k 2 5 scontrol update nodename="$(hostname)" \
                    state=resume >/dev/null 2>&1 || true
                resumed=1
            fi
            ;;
        esac
        sleep 1
    done
    timeout -k 2 5 scontrol show node "$(hostname)" >&2 || true
    fail_with_logs "node not idle within ${WAIT_IDLE}s (state '${state:-?}')"
}

all_running() {
    live_pid "$MUNGED_PID" >/dev/null &&
        live_pid "$CTLD_PID" >/dev/null &&
        live_pid "$SLURMD_PID" >/dev/null
}

any_running() {
    live_pid "$MUNGED_PID" >/dev/null ||
        live_pid "$CTLD_PID" >/dev/null ||
        live_pid "$SLURMD_PID" >/dev/null
}

cmd_start() {
    need_root
    command -v timeout >/dev/null || die "coreutils 'timeout' missing"
    if [ -f "$SLURM_CONF" ] && all_running; then
        log "already running; verifying"
        timeout -k 2 5 scontrol ping | grep -q 'is UP' ||
            fail_with_logs "slurmctld does not answer"
        wait_node_idle
        print_env
        return 0
    fi
    if any_running; then
        log "partially running; restarting"
        cmd_stop
    fi
    install_packages
    ensure_hostname_resolves
    ensure_munge_key
    mkdir -p "$ETC" "$RUN" "$LOG" "$MUNGE_DIR" "$DIR/state" "$DIR/spool/slurmd"
    chmod 755 "$DIR"
    write_config
    link_default_conf
    start_munged
    start_slurmctld
    start_slurmd
    wait_node_idle
    log "cluster up; use:"
    print_env
}

# stop the process in pid file $2 (name $1): TERM, wait up to 20 s, KILL
stop_daemon() {
    local name="$1" f="$2" pid i
    if ! pid="$(live_pid "$f")"; then
        rm -f "$f"
        return 0
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 40); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name did not exit on TERM; killing"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$f"
}

cmd_stop() {
    need_root
    local jobs i
    if live_pid "$CTLD_PID" >/dev/null; then
        jobs="$(timeout -k 2 10 squeue -h -o '%i' 2>/dev/null || true)"
        if [ -n "$jobs" ]; then
            log "cancelling jobs: $(echo $jobs)"
            # shellcheck disable=SC2086
            timeout -k 2 10 scancel $jobs 2>/dev/null || true
            # let slurmd/slurmstepd finish the cancelled jobs (bounded)
            for i in $(seq 1 30); do
                [ -z "$(timeout -k 2 5 squeue -h -t R,CG,CF,PD -o '%i' \
                    2>/dev/null || true)" ] && break
                sleep 0.5
            done
        fi
    fi
    stop_daemon slurmd "$SLURMD_PID"
    stop_daemon slurmctld "$CTLD_PID"
    stop_daemon munged "$MUNGED_PID"
    unlink_default_conf
    log "stopped"
}

cmd_status() {
    local ok=0 name f pid
    for name in munged slurmctld slurmd; do
        case "$name" in
        munged) f="$MUNGED_PID" ;;
        slurmctld) f="$CTLD_PID" ;;
        slurmd) f="$SLURMD_PID" ;;
        esac
        if pid="$(live_pid "$f")"; then
            echo "$name: running (pid $pid)"
        else
            echo "$name: not running"
            ok=1
        fi
    done
    echo "SLURM_CONF=$SLURM_CONF"
    if [ "$ok" -eq 0 ]; then
        timeout -k 2 5 scontrol ping || ok=1
        timeout -k 2 5 sinfo || ok=1
        timeout -k 2 5 squeue || ok=1
        case "$(node_state || true)" in
        idle | mixed | allocated) ;;
        *) ok=1 ;;
        esac
    fi
    return "$ok"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) print_env ;;
logs) show_logs 2>&1 ;;
*)
    echo "usage: $0 {start|stop|status|env|logs}" >&2
    exit 2
    ;;
esac
