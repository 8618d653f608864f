#!/usr/bin/env bash
# Install the editors that tests/editors/test_neovim.py and test_emacs.py drive:
# Debian's neovim (0.7+), emacs-nox (28+) and elpa-eglot. Idempotent: apt-get runs
# (update included) only when one of them is missing, so a second run costs nothing.
set -euo pipefail

# bubblewrap: the sandbox that runs generated code and tests without network
# (lsp_server/sandbox falls back to rlimits alone where it is missing).
PACKAGES=(neovim emacs-nox elpa-eglot bubblewrap)

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing=()
for package in "${PACKAGES[@]}"; do
    installed "$package" || missing+=("$package")
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "setup-editors-apt: already installed: ${PACKAGES[*]}"
    exit 0
fi

if ! command -v apt-get >/dev/null; then
    echo "setup-editors-apt: apt-get not found; install ${missing[*]} with your package manager" >&2
    exit 1
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup-editors-apt: run as root to install ${missing[*]}" >&2; exit 1; }
    SUDO=(sudo)
fi

echo "setup-editors-apt: installing ${missing[*]}"
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
