#!/bin/sh
# The exported function's volume (EFS), written from a host that mounts it through the
# stack's access point, in mlambda's layout: models/NAME/versions/SHA256/FILE, immutable,
# and models/NAME/current, a symlink replaced by an atomic rename, so that functions
# reading the model (mlambda.volume.Model) switch to the new version between two calls.
#
#   volume.sh ROOT push NAME FILE       store FILE as a version of model NAME; make it current
#   volume.sh ROOT rollback NAME SHA256 make an earlier stored version current again
#   volume.sh ROOT packages DIR         copy a packages directory (--packages-on-efs) in
#
# ROOT is where the access point is mounted on this host (its MLAMBDA_VOLUME).
set -eu
umask 022

die() { echo "volume.sh: $*" >&2; exit 2; }
[ $# -ge 3 ] || die "usage: volume.sh ROOT push NAME FILE | rollback NAME SHA256 | packages DIR"
root=$1; command=$2; shift 2
[ -d "$root" ] || die "$root: not a directory (mount the access point there first)"

flip() {  # flip NAME SHA256 FILENAME: point current at a stored version, atomically
    dir="$root/models/$1"
    [ -f "$dir/versions/$2/$3" ] || die "model $1 has no stored version $2"
    ln -s "versions/$2/$3" "$dir/.current-$$"
    mv -T "$dir/.current-$$" "$dir/current"
    echo "$1 current -> $2 ($3)"
}

case $command in
push)
    [ $# -eq 2 ] || die "usage: volume.sh ROOT push NAME FILE"
    name=$1; file=$2
    echo "$name" | grep -Eq '^[A-Za-z0-9_-]{1,64}$' || die "model name $name: expected 1-64 letters, digits, '-' or '_'"
    filename=$(basename "$file")
    echo "$filename" | grep -Eq '^[A-Za-z0-9_.-]{1,128}$' || die "file name $filename: expected letters, digits, '.', '-', '_'"
    sha=$(sha256sum "$file" | cut -d' ' -f1)
    dir="$root/models/$name"
    mkdir -p "$dir/versions/$sha"
    if [ ! -f "$dir/versions/$sha/$filename" ]; then
        tmp="$dir/.incoming-$$"
        cp "$file" "$tmp"
        sync "$tmp"
        copied=$(sha256sum "$tmp" | cut -d' ' -f1)
        [ "$copied" = "$sha" ] || { rm -f "$tmp"; die "the copy's SHA-256 is $copied, not $sha: discarded"; }
        mv "$tmp" "$dir/versions/$sha/$filename"
    fi
    flip "$name" "$sha" "$filename"
    ;;
rollback)
    [ $# -eq 2 ] || die "usage: volume.sh ROOT rollback NAME SHA256"
    name=$1; sha=$2
    [ -d "$root/models/$name/versions/$sha" ] || die "model $name has no stored version $sha"
    filename=$(ls "$root/models/$name/versions/$sha")
    flip "$name" "$sha" "$filename"
    ;;
packages)
    [ $# -eq 1 ] || die "usage: volume.sh ROOT packages DIR"
    src=${1%/}; id=$(basename "$src")
    mkdir -p "$root/packages"
    if [ -d "$root/packages/$id" ]; then echo "packages/$id: already there"; exit 0; fi
    cp -R "$src" "$root/packages/.incoming-$$"
    mv -T "$root/packages/.incoming-$$" "$root/packages/$id"
    echo "packages/$id: copied"
    ;;
*)
    die "unknown command $command: expected push, rollback or packages"
    ;;
esac
