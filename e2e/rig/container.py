"""Test tooling: run a container of a rendered object as a local process, with its
container paths mapped into a temporary directory.

``deepseek-operator render`` prints what a DeepSeekDeployment becomes; the download Job,
the ``wait-for-model`` init container and the engine's preStop hook carry shell and Python
scripts that run in pods. ``LocalContainer`` takes such a container (its ``command``,
``args``, ``env``, ``envFrom`` and ``volumeMounts``, as rendered) and turns it into an argv
and an environment for ``subprocess``, doing by hand what the kubelet and the image would:

- each ``volumeMounts[].mountPath`` becomes ``root/<volume name>`` (created), and the
  ``terminationMessagePath`` becomes ``root/termination-log``. Only environment values are
  rewritten (a value equal to a mapped path, or below it): the rendered scripts find every
  path through their environment, never as a literal;
- ``envFrom`` Secrets come from ``secrets`` (name -> {key: value}), as the kubelet reads
  them; a Secret the test does not give is absent, as one without those keys would be;
- ``$(VAR)`` in ``env`` values, ``command`` and ``args`` is expanded from the container's
  environment and ``$$`` stands for ``$``, the kubelet's rules (Kubernetes API reference,
  Container.args: "Variable references $(VAR_NAME) are expanded using the container's
  environment ... Double $$ are reduced to a single $");
- ``PATH`` is what the image would provide: ``tools`` (the project's own virtualenvs'
  bin directories) before ``/usr/bin:/bin``.

``termination_message`` reproduces the kubelet's rule for ``state.terminated.message``
(Kubernetes docs, "Customizing the termination message"): the termination-message file
when the container wrote it (at most 4096 bytes), else, with ``terminationMessagePolicy:
FallbackToLogsOnError`` and a failed container, the last 80 lines of its log, at most
2048 bytes.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

TERMINATION_FILE = "termination-log"
DEFAULT_TERMINATION_PATH = "/dev/termination-log"
MESSAGE_FILE_BYTES = 4096
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048
_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def render(documents: Sequence[Mapping[str, Any]], workdir: Path) -> list[dict[str, Any]]:
    """The objects ``deepseek-operator render -f FILE`` prints for ``documents`` (CRs),
    written to ``workdir/crs.yaml`` first. Runs the installed CLI of this virtualenv.

    Raises subprocess.CalledProcessError when the CLI refuses a document.
    """
    path = workdir / "crs.yaml"
    path.write_text(yaml.safe_dump_all(list(documents)))
    cli = Path(sys.executable).parent / "deepseek-operator"
    out = subprocess.run([str(cli), "render", "-f", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(objects: Sequence[Mapping[str, Any]], kind: str, name_prefix: str) -> dict[str, Any]:
    """The first object of ``kind`` whose name starts with ``name_prefix``.

    Raises LookupError when there is none."""
    for obj in objects:
        if obj.get("kind") == kind and str(obj["metadata"]["name"]).startswith(name_prefix):
            return dict(obj)
    raise LookupError(f"no {kind} named {name_prefix}* in the rendered objects")


def pod_spec(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The pod spec of a Job, Deployment (``spec.template``) or LeaderWorkerSet leader."""
    spec = obj["spec"]
    if "leaderWorkerTemplate" in spec:
        template = spec["leaderWorkerTemplate"].get("leaderTemplate") or \
            spec["leaderWorkerTemplate"]["workerTemplate"]
        return dict(template["spec"])
    return dict(spec["template"]["spec"])


def container(obj: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The container (or init container) ``name`` of ``obj``'s pod spec.

    Raises LookupError when the pod has no such container."""
    spec = pod_spec(obj)
    for item in [*(spec.get("initContainers") or []), *spec["containers"]]:
        if item["name"] == name:
            return dict(item)
    raise LookupError(f"no container {name!r}")


def expand(text: str, env: Mapping[str, str]) -> str:
    """``text`` with ``$(VAR)`` replaced by ``env[VAR]`` (left as written when VAR is not
    set) and ``$$`` by ``$``, as the kubelet does."""
    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))
    return _REFERENCE.sub(one, text)


class LocalContainer:
    """One rendered container, mapped onto ``root`` (see the module docstring).

    ``argv`` and ``env`` are ready for ``subprocess``; ``paths`` maps each container path
    to its local directory or file; ``path(p)`` maps one container path.
    """

    def __init__(self, spec: Mapping[str, Any], root: Path, *, tools: Sequence[Path] = (),
                 secrets: Mapping[str, Mapping[str, str]] | None = None,
                 extra_env: Mapping[str, str] | None = None) -> None:
        """Map ``spec`` (a rendered container) onto ``root``; ``extra_env`` is added last
        (what a test sets beyond the pod, e.g. HF_ENDPOINT toward a local Hub)."""
        self.spec = dict(spec)
        self.root = root
        self.paths: dict[str, Path] = {}
        for mount in spec.get("volumeMounts") or []:
            local = root / str(mount["name"])
            local.mkdir(parents=True, exist_ok=True)
            self.paths[str(mount["mountPath"])] = local
        self.termination_file = root / TERMINATION_FILE
        self.paths[str(spec.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH)] = \
            self.termination_file
        env: dict[str, str] = {"PATH": os.pathsep.join([*map(str, tools), "/usr/bin", "/bin"])}
        for source in spec.get("envFrom") or []:
            name = (source.get("secretRef") or {}).get("name")
            env.update((secrets or {}).get(str(name), {}))
        for var in spec.get("env") or []:
            if "value" in var:
                env[str(var["name"])] = self.path(expand(str(var["value"]), env))
        env.update(extra_env or {})
        self.env = env
        self.argv = [expand(str(part), env)
                     for part in [*(spec.get("command") or []), *(spec.get("args") or [])]]

    def path(self, value: str) -> str:
        """``value`` with a mapped container path prefix replaced by its local path."""
        for inside, local in sorted(self.paths.items(), key=lambda kv: -len(kv[0])):
            if value == inside or value.startswith(inside.rstrip("/") + "/"):
                return str(local) + value[len(inside.rstrip("/")):]
        return value

    def start(self, on_line: Callable[[str], None] | None = None) -> Process:
        """Start the container's command as a process in its own session."""
        self.termination_file.unlink(missing_ok=True)
        return Process(self, on_line)

    def termination_message(self, exit_code: int, log: str) -> str:
        """``state.terminated.message`` as the kubelet would set it (module docstring)."""
        if self.termination_file.is_file():
            written = self.termination_file.read_bytes()[:MESSAGE_FILE_BYTES]
            if written:
                return written.decode(errors="replace")
        if exit_code != 0 and self.spec.get("terminationMessagePolicy") == \
                "FallbackToLogsOnError":
            tail = "\n".join(log.splitlines()[-FALLBACK_LOG_LINES:]).encode()
            return tail[-FALLBACK_LOG_BYTES:].decode(errors="replace")
        return ""


class OutputProcess:
    """A process in its own session whose stdout and stderr are merged into ``lines``
    (and passed to ``on_line`` as they come), as ``kubectl logs`` shows a container's
    output."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str],
                 on_line: Callable[[str], None] | None = None) -> None:
        """Start ``argv`` with exactly ``env``."""
        self.lines: list[str] = []
        self.on_line = on_line
        self.started = time.monotonic()
        self.process = subprocess.Popen(list(argv), env=dict(env),
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if self.on_line is not None:
                self.on_line(line.rstrip("\n"))

    @property
    def log(self) -> str:
        """Everything the process printed so far, one line per line."""
        return "\n".join(self.lines)

    def wait(self, timeout: float) -> int:
        """The exit code, once the process and its output are done.

        Raises subprocess.TimeoutExpired after ``timeout`` seconds."""
        code = self.process.wait(timeout)
        self._reader.join(10)
        return code

    def wait_until(self, done: Callable[[], bool], timeout: float) -> None:
        """Until ``done()`` (polled every 0.1 s); TimeoutError with the log after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"not reached in {timeout} s; output so far:\n{self.log}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the process and its children (its session), as a node loss or an OOM
        kill ends a pod: nothing gets to clean up."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self._reader.join(10)


class Process(OutputProcess):
    """A started ``LocalContainer`` (see ``OutputProcess``)."""

    def __init__(self, container: LocalContainer,
                 on_line: Callable[[str], None] | None = None) -> None:
        """Start ``container.argv`` (see ``LocalContainer.start``)."""
        self.container = container
        super().__init__(container.argv, container.env, on_line)

    def termination_message(self) -> str:
        """The kubelet's ``state.terminated.message`` of the finished process."""
        code = self.process.poll()
        if code is None:
            raise RuntimeError("the process still runs")
        return self.container.termination_message(code, self.log)


def half_written(model_dir: Path, marker: str, total: int) -> Callable[[], bool]:
    """A probe for ``OutputProcess.wait_until``: True once the files under ``model_dir``
    hold a third of ``total`` bytes; it fails (AssertionError) if the completion
    ``marker`` appears before."""
    def probe() -> bool:
        present = sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file()) \
            if model_dir.is_dir() else 0
        assert not (model_dir / marker).exists(), "marker before the end"
        return present >= total // 3
    return probe
