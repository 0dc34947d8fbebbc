# Sourced by the build scripts: makes `go` on PATH new enough for every module here.
# A missing go is Debian's golang-go (hack/install-system-packages.sh). When that go is older
# than the newest `go` line of our go.mod files, the toolchain comes from the Go module proxy
# (the module golang.org/toolchain), never from a download site: go 1.21 and newer fetch it
# themselves with GOTOOLCHAIN; an older go downloads it as a module and runs it from the cache.
localcluster_go_need() {
  local dir
  dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  sed -n 's/^go \([0-9.]*\)$/\1/p' "$dir"/*/go.mod | sort -V | tail -1
}

localcluster_go_env() {
  local need have arch mod tmp
  need=$(localcluster_go_need)
  have=$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null || true)
  have=${have#go}
  if [ -z "$have" ]; then
    echo "go is missing: run hack/install-system-packages.sh" >&2
    return 1
  fi
  if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" = "$need" ]; then
    return 0
  fi
  if [ "$(printf '%s\n%s\n' 1.21 "$have" | sort -V | head -1)" = 1.21 ]; then
    export GOTOOLCHAIN="go$need"
    return 0
  fi
  arch=$(go env GOARCH)
  tmp=$(mktemp -d)
  mod=$(cd "$tmp" && GOFLAGS=-mod=mod go mod download -json \
    "golang.org/toolchain@v0.0.1-go$need.linux-$arch" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  rmdir "$tmp"
  if [ ! -x "$mod/bin/go" ]; then
    # Module files are extracted without execute bits.
    chmod -R u+x "$mod/bin" "$mod/pkg/tool"
  fi
  export PATH="$mod/bin:$PATH" GOTOOLCHAIN=local
  unset GOROOT
}
