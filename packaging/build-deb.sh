#!/bin/sh
# Build the Debian package from this tree: dist/fowld_VERSION_ARCH.deb (see docs/packaging.md).
#
# dpkg-buildpackage writes its results next to the source directory and wants
# ./debian, so the build runs in a copy under build/deb: the tree itself stays clean.
set -eu
cd "$(dirname "$0")/.."
sh packaging/apt-install-missing.sh build-essential debhelper dpkg-dev python3-venv ca-certificates

version=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
upstream=${version%-*}
declared=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml)
if [ "$upstream" != "$declared" ]; then
    echo "packaging/debian/changelog is at $version but pyproject.toml at $declared:" \
        "add a changelog entry (dch -v $declared-1) first" >&2
    exit 1
fi
if ! git rev-parse --show-toplevel >/dev/null 2>&1; then
    echo "make deb copies the files git knows about: run it in a git checkout" >&2
    exit 1
fi

work=build/deb
source="$work/fowld-$upstream"
rm -rf "$work"
mkdir -p "$source" dist
# Tracked and new files, without what .gitignore names (virtual environments, caches).
git ls-files -z --cached --others --exclude-standard |
    xargs -0 sh -c 'for f; do [ -f "$f" ] && printf "%s\0" "$f"; done' copy |
    tar --null -T - -cf - | tar -C "$source" -xf -
cp -r packaging/debian "$source/debian"
(cd "$source" && dpkg-buildpackage -us -uc -b)

arch=$(dpkg-architecture -q DEB_HOST_ARCH)
deb="fowld_${version}_${arch}.deb"
rm -f dist/fowld_*.deb
cp "$work/$deb" dist/
echo "built dist/$deb"
