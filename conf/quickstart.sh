#!/bin/sh
# Quick start: two isakmpd daemons on this machine's loopback address negotiate
# Main Mode and Quick Mode with a pre-shared key, and each prints its SAs (the
# FIFO command S).
#
#   sh conf/quickstart.sh [--keep]
#
# It builds a virtualenv in a new temporary directory and installs this checkout
# into it (on Debian as root it first installs python3-venv if it is missing),
# starts "west" (conf/quickstart-west.conf, UDP 5500/5501) and "east"
# (conf/quickstart-east.conf, UDP 5600/5601) with -d -n (foreground, SAs kept in
# memory: no root, no kernel changes), with their configuration, FIFO, pid, report,
# result and log files in that directory, waits until both hold a phase 1 and a
# phase 2 SA, prints both S results, then stops them (SIGTERM: DELETEs, clean exit)
# and removes the directory. With --keep both daemons keep running and the
# directory stays; the script prints how to talk to them and stop them.
#
# ISAKMPD=/path/to/isakmpd uses an installed console script instead of building a
# virtualenv (the tests do that).
set -eu

src=$(cd "$(dirname "$0")/.." && pwd)
keep=no
[ "${1:-}" = --keep ] && keep=yes
dir=$(mktemp -d "${TMPDIR:-/tmp}/isakmpd-quickstart.XXXXXX")
west_pid=""
east_pid=""

stop() {
    for pid in $west_pid $east_pid; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in $west_pid $east_pid; do
        wait "$pid" 2>/dev/null || true
    done
}
finish() {
    status=$?
    if [ "$keep" = yes ] && [ "$status" -eq 0 ]; then
        return
    fi
    stop
    if [ "$status" -ne 0 ]; then
        for name in west east; do
            [ -s "$dir/$name.log" ] || continue
            echo "--- last lines of $name's log ($dir/$name.log):"
            tail -n 15 "$dir/$name.log"
        done
    fi
    rm -rf "$dir"
}
trap finish EXIT
trap 'exit 1' INT TERM HUP

if [ -n "${ISAKMPD:-}" ]; then
    isakmpd=$ISAKMPD
else
    python=${PYTHON:-python3}
    if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "installing python3-venv"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        else
            echo "$python cannot create a virtualenv: install python3-venv (as root:" \
                 "apt-get install python3-venv) and run this again" >&2
            exit 1
        fi
    fi
    echo "installing isakmpd from $src into $dir/venv"
    "$python" -m venv "$dir/venv"
    "$dir/venv/bin/python" -m pip install -q "$src"
    isakmpd=$dir/venv/bin/isakmpd
fi

start() {   # name, IKE port, NAT-T port
    cp "$src/conf/quickstart-$1.conf" "$dir/$1.conf"
    chmod 600 "$dir/$1.conf"    # git keeps no modes; the daemon refuses a readable file
    "$isakmpd" -d -n -4 -c "$dir/$1.conf" -p "$2" -N "$3" -i "$dir/$1.pid" \
        -f "$dir/$1.fifo" -R "$dir/$1.report" --result-file "$dir/$1.result" \
        2>"$dir/$1.log" &
    eval "$1_pid=$!"
}
alive() {   # name: whether that daemon still runs
    eval "pid=\$${1}_pid"
    # (kill -0 would still succeed on a child that died and was not reaped)
    state=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$pid/status" 2>/dev/null ||
        true)
    case $state in ""|Z|X) return 1 ;; esac
}
# East first, and west once east listens (it logs "listening on" once its ports
# are bound), so that west's first message is not lost.
start east 5600 5601
deadline=$(($(date +%s) + 20))
until grep -q "listening on" "$dir/east.log" 2>/dev/null; do
    alive east || { echo "east stopped" >&2; exit 1; }
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "east did not start within 20 seconds" >&2
        exit 1
    fi
    sleep 0.2
done
start west 5500 5501

# Ask both daemons for their SAs (S writes them to the result file) until each
# shows a phase 1 and a phase 2 SA; 30 seconds at most.
established() {   # name
    [ -p "$dir/$1.fifo" ] || return 1     # writing before it exists would make a file
    # A FIFO nobody reads (its daemon died) would block the writer: time it out.
    timeout 5 sh -c 'echo S >"$1"' sh "$dir/$1.fifo" || return 1
    sleep 0.3
    grep -q '(Phase 1' "$dir/$1.result" 2>/dev/null &&
        grep -q '(Phase 2' "$dir/$1.result" 2>/dev/null
}
deadline=$(($(date +%s) + 30))
until established west && established east; do
    for name in west east; do
        alive "$name" || { echo "$name stopped" >&2; exit 1; }
    done
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "no Main Mode + Quick Mode SAs after 30 seconds" >&2
        exit 1
    fi
    sleep 0.2
done

for name in west east; do
    echo "=== $name: S (SAs) ==="
    cat "$dir/$name.result"
done

if [ "$keep" = yes ]; then
    cat <<EOF
Both daemons keep running; their files are in $dir.
  commands:  echo S > $dir/west.fifo; cat $dir/west.result   (see isakmpd(8) for the rest)
  logs:      $dir/west.log, $dir/east.log
  stop both: kill $west_pid $east_pid; rm -rf $dir
EOF
fi
