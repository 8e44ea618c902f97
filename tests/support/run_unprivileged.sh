#!/usr/bin/env bash
# The suite without real vLLM servers (`-m "not e2e"`), as an ordinary user, with umask 0002
# and PYTHONDONTWRITEBYTECODE set: its results must not depend on who runs it. As root, the
# user is created (once) and given the right to traverse to the interpreter and the checkout;
# as another user, the suite simply runs as that user.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
USER_NAME=${TT_META_TEST_USER:-tt-meta-test}
scratch=$(mktemp -d /tmp/tt-meta-unprivileged.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
args=(-m pytest -q -ra -m "not e2e" -p no:cacheprovider --basetemp "$scratch/tmp")
env_vars=(HOME="$scratch/home" PYTHONDONTWRITEBYTECODE=1
          HYPOTHESIS_STORAGE_DIRECTORY="$scratch/hypothesis" PATH="$PATH")

if [ "$(id -u)" != 0 ]; then
    mkdir -p "$scratch/home"
    umask 0002
    exec env "${env_vars[@]}" "$PY" "${args[@]}"
fi

id -u "$USER_NAME" >/dev/null 2>&1 ||
    useradd --system --no-create-home --shell /usr/sbin/nologin "$USER_NAME"
# Each directory above the interpreter and the checkout must be traversable (o+x: enter, not
# list); /root is not, where pyenv puts Python.
for path in "$(readlink -f "$PY")" "$PWD"; do
    dir=$(dirname "$path")
    while [ "$dir" != / ]; do
        [ -n "$(find "$dir" -maxdepth 0 -perm -o+x)" ] || chmod o+x "$dir"
        dir=$(dirname "$dir")
    done
done
mkdir -p "$scratch/home"
chown -R "$USER_NAME" "$scratch"
exec runuser -u "$USER_NAME" -- env -i "${env_vars[@]}" LANG=C.UTF-8 \
    bash -c 'umask 0002 && exec "$0" "$@"' "$PY" "${args[@]}"
