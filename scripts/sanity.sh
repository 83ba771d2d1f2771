#!/usr/bin/env bash
# `ansible-test sanity` without Docker, on a copy of this checkout's tracked files (`git ls-files`, less the
# `collections/` link back to the checkout) at .cache/sanity/ansible_collections/opendove/mailserver, where
# ansible-test wants a collection to be. The copy is its own git repository: ansible-test takes its file list from
# the nearest .git above the collection, and this checkout's would list nothing under the ignored .cache/.
# Files not yet added to git are not tested. --venv: each sanity test runs in a virtual environment of its own
# (cached in ~/.ansible/test/venv), with the Python version of the ansible-test found on PATH (the .venv's).
# Arguments go to ansible-test (e.g. `scripts/sanity.sh --test pylint`). Output: .cache/sanity.log.
# The shellcheck test needs shellcheck on the PATH (Debian package shellcheck); without it ansible-test skips it
# with a warning.
set -euo pipefail
cd "$(dirname "$0")/.."
copy=.cache/sanity/ansible_collections/opendove/mailserver
python=$(dirname "$(command -v ansible-test)")/python
version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# ansible-test puts pip into each virtual environment it makes with a get-pip script from
# ci-files.testing.ansible.com, or with the copy in its cache (~/.ansible/test/cache). Where that host cannot be
# reached (from these machines only PyPI can), the cache gets an equivalent: pip's own wheel from PyPI, run the
# way get-pip runs its embedded copy (`pip install --upgrade --force-reinstall ARGS pip`).
pip_version=$("$python" -c 'import sys, types
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(types.SimpleNamespace(version=sys.argv[1]))["pip"])' "$version")
get_pip=~/.ansible/test/cache/get_pip_${pip_version//./_}.py
if [ ! -e "$get_pip" ]; then
  mkdir -p "${get_pip%/*}"
  if ! "$python" -c 'import shutil, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=30) as answer, open(sys.argv[2], "wb") as file:
    shutil.copyfileobj(answer, file)' "https://ci-files.testing.ansible.com/ansible-test/get-pip-$pip_version.py" \
      "$get_pip.download" 2>/dev/null; then
    echo "== ci-files.testing.ansible.com cannot be reached: $get_pip runs pip $pip_version's wheel from PyPI"
    "$python" -m pip download -q --no-deps --only-binary :all: -d "${get_pip%/*}" "pip==$pip_version"
    cat >"$get_pip.download" <<END
"""get-pip for pip $pip_version, made by opendove.mailserver's scripts/sanity.sh from pip's wheel on PyPI."""
import sys

sys.path.insert(0, "${get_pip%/*}/pip-$pip_version-py3-none-any.whl")
from pip._internal.cli.main import main  # noqa: E402

args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--upgrade", "--force-reinstall", *args, "pip"]))
END
  fi
  mv "$get_pip.download" "$get_pip"
fi

# A fresh copy each run, keeping tests/output/ (ansible-test's virtual environment and results).
mkdir -p "$copy/tests"
find "$copy" -mindepth 1 -maxdepth 1 ! -name tests -exec rm -rf {} +
find "$copy/tests" -mindepth 1 -maxdepth 1 ! -name output -exec rm -rf {} +
git ls-files -z | grep -zv '^collections/' | while IFS= read -r -d '' file; do
  if [ -e "$file" ]; then printf '%s\0' "$file"; fi  # not a file deleted but not yet committed
done | tar --null -T - -cf - | tar -xf - -C "$copy"
git -C "$copy" init -q
echo /tests/output/ >"$copy/.git/info/exclude"  # ansible-test's own virtual environment and results
git -C "$copy" add -A

echo "== ansible-test sanity --venv --python $version ($(date -u +%T)), in $copy"
SECONDS=0
status=0
(cd "$copy" && ansible-test sanity --venv --python "$version" --color no "$@") 2>&1 | tee .cache/sanity.log \
  || status=$?
echo "== ansible-test sanity: exit $status after $SECONDS s (the whole output: .cache/sanity.log)"
exit "$status"
