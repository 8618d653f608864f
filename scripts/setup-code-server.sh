#!/usr/bin/env bash
# Build code-server 4.100.3 (VS Code in the browser) for the real-editor test, offline of GitHub.
#
# A plain `npm install code-server` fails here: its postinstall scripts download binaries
# from GitHub. This follows the recipe checked on this machine (issue 5): install with
# --ignore-scripts, use Debian's ripgrep, rebuild the native modules from source.
#
# Idempotent and cached: the build lives in
#   ${GHOSTPILOT_CACHE:-$HOME/.cache/ghostpilot}/code-server-4.100.3
# and a finished build (marked by .ghostpilot-ready) is reused in seconds.
# Also installs the apt packages it needs when they are missing, and playwright-core
# for tests/editors/vscode (npm ci). Prints the code-server path on its last line.
set -euo pipefail

VERSION=4.100.3
CACHE_ROOT=${GHOSTPILOT_CACHE:-$HOME/.cache/ghostpilot}
DEST=$CACHE_ROOT/code-server-$VERSION
STAMP=$DEST/.ghostpilot-ready
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARNESS=$REPO/tests/editors/vscode
APT_PACKAGES=(libkrb5-dev libxkbfile-dev libsecret-1-dev libx11-dev ripgrep chromium build-essential python3)

log() { printf '[setup-code-server] %s\n' "$*" >&2; }

# Run one build step, its output going to the build log; on failure show the log's tail.
step() {
    local title=$1
    shift
    log "$title"
    if ! "$@" >> "$BUILD_LOG" 2>&1; then
        log "FAILED: $title (last lines of $BUILD_LOG follow)"
        tail -n 40 "$BUILD_LOG" >&2
        exit 1
    fi
}
started=$(date +%s)

install_apt_packages() {
    local missing=()
    for package in "${APT_PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$package")
        fi
    done
    if [ ${#missing[@]} -eq 0 ]; then
        return
    fi
    log "installing apt packages: ${missing[*]}"
    local sudo=()
    if [ "$(id -u)" != 0 ]; then
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    # Lock timeout: other jobs on the machine may be running apt at the same time.
    if ! "${sudo[@]}" apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${missing[@]}"; then
        "${sudo[@]}" apt-get update -qq -o DPkg::Lock::Timeout=600
        "${sudo[@]}" apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${missing[@]}"
    fi
}

install_playwright() {
    # playwright-core has no install script and downloads no browser: Debian's chromium is used.
    if [ -f "$HARNESS/node_modules/playwright-core/package.json" ] \
        && [ "$HARNESS/node_modules/.package-lock.json" -nt "$HARNESS/package-lock.json" ]; then
        return
    fi
    log "npm ci in tests/editors/vscode (playwright-core)"
    (cd "$HARNESS" && npm ci --no-audit --no-fund --loglevel=error)
}

build_code_server() {
    local work=$DEST.partial
    rm -rf "$work"
    mkdir -p "$work"
    cd "$work"
    BUILD_LOG=$work/build.log
    printf '{"name":"ghostpilot-code-server","private":true}\n' > package.json
    local vscode=$work/node_modules/code-server/lib/vscode

    step "1/8 npm install --ignore-scripts code-server@$VERSION" \
        npm install --ignore-scripts --no-audit --no-fund "code-server@$VERSION"
    step "2/8 VS Code's dependencies (--omit=dev --ignore-scripts)" \
        bash -c "cd '$vscode' && npm install --omit=dev --ignore-scripts --no-audit --no-fund"
    step "3/8 link Debian's rg so @vscode/ripgrep skips its download" \
        bash -c "mkdir -p '$vscode/node_modules/@vscode/ripgrep/bin' \
                 && ln -sf '$(command -v rg)' '$vscode/node_modules/@vscode/ripgrep/bin/rg'"
    step "4/8 npm rebuild: native modules from source (about a minute)" \
        bash -c "cd '$vscode' && npm_config_unsafe_perm=true npm_config_yes=true npm rebuild"
    step "5/8 the links code-server's postinstall.sh makes" \
        bash -c "cd '$vscode' && rm -rf node_modules.asar && ln -s node_modules node_modules.asar \
                 && cd bin/remote-cli && rm -rf code-server && ln -s code-linux.sh code-server \
                 && cd ../helpers && rm -rf browser.sh && ln -s browser-linux.sh browser.sh"
    step "6/8 built-in extensions' dependencies" \
        bash -c "cd '$vscode/extensions' && npm install --omit=dev --no-audit --no-fund"
    step "7/8 npm rebuild argon2 --build-from-source" \
        bash -c "cd '$work' && npm rebuild argon2 --build-from-source"

    log "8/8 smoke test"
    local version
    # XDG_CONFIG_HOME: code-server writes a default config.yaml there on first start.
    version=$(XDG_CONFIG_HOME=$work/.xdg "$work/node_modules/.bin/code-server" --version 2>&1 || true)
    rm -rf "$work/.xdg"
    if ! grep -q "^$VERSION " <<< "$version"; then
        log "unexpected code-server --version output: '$version' (see $BUILD_LOG)"
        exit 1
    fi
    for native in node-pty/build/Release/pty.node @vscode/spdlog/build/Release/spdlog.node; do
        if [ ! -f "$vscode/node_modules/$native" ]; then
            log "native module missing after npm rebuild: $native (see $BUILD_LOG)"
            exit 1
        fi
    done
    if [ ! -f "$work/node_modules/argon2/lib/binding/napi-v3/argon2.node" ] \
        && ! find "$work/node_modules/argon2" -name '*.node' | grep -q .; then
        log "argon2 was not built (see $BUILD_LOG)"
        exit 1
    fi

    date -u +%FT%TZ > "$work/.ghostpilot-ready"
    cd "$CACHE_ROOT"
    rm -rf "$DEST"
    mv "$work" "$DEST"
}

install_apt_packages
install_playwright
if [ -f "$STAMP" ] && [ -x "$DEST/node_modules/.bin/code-server" ]; then
    log "cached build in $DEST ($(($(date +%s) - started)) s)"
else
    mkdir -p "$CACHE_ROOT"
    build_code_server
    log "built code-server $VERSION in $DEST ($(($(date +%s) - started)) s)"
fi
echo "$DEST/node_modules/.bin/code-server"
