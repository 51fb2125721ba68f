"""GPU requests (`--gpus 8xH100`), providers, and the split of each machine's GPUs between vLLM and the trainer.

    GpuRequest.parse("8xH100")  -> GpuRequest(count=8, kind="H100"), accelerators "H100:8" (SkyPilot's spelling)
    GpuRequest.parse("2")       -> two GPUs of any type (local runs)
    GpuRequest.parse("0")       -> None: the CPU

Providers: `local` (this machine), `skypilot` (any cloud SkyPilot can reach; `--infra aws`, `gcp/us-central1`,
`k8s`, ...; SkyPilot picks the cheapest enabled one when unset) and `prime` (SkyPilot with infra
`primeintellect`). Some SkyPilot clouds cannot launch several nodes (`SINGLE_NODE_INFRAS`, checked against
SkyPilot's own cloud registry by a test); asking one for `--nodes 2` is refused before anything launches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hud_vf_gym.errors import ConfigError
from hud_vf_gym.training.names import PROVIDERS

__all__ = ["PROVIDERS", "PRIME_INFRA", "SINGLE_NODE_INFRAS", "GpuRequest", "GpuSplit", "Placement"]

PRIME_INFRA = "primeintellect"
# SkyPilot 0.14's clouds whose _CLOUD_UNSUPPORTED_FEATURES include MULTI_NODE (tests/training/test_sky_yaml.py
# compares this with SkyPilot's registry). Verda allows it only behind an experimental flag.
SINGLE_NODE_INFRAS = frozenset(
    {"hyperbolic", "primeintellect", "runpod", "seeweb", "shadeform", "vast", "verda", "vsphere", "yotta"}
)
_INFRA_ALIASES = {"k8s": "kubernetes", "prime": PRIME_INFRA}
_REQUEST = re.compile(r"^\s*(?:(?P<count>\d+)\s*(?:[xX*]\s*(?P<kind>[A-Za-z][\w.-]*))?|(?P<kind2>[A-Za-z][\w.-]*)"
                      r"(?::(?P<count2>\d+))?)\s*$")  # fmt: skip


@dataclass(frozen=True, slots=True)
class GpuRequest:
    """A number of GPUs per machine, and their type when it matters (a cloud must be told which to rent)."""

    count: int
    kind: str | None = None

    @classmethod
    def parse(cls, text: str | None) -> GpuRequest | None:
        """`N`, `NxTYPE` (`8xH100`) or SkyPilot's `TYPE:N` (`H100:8`); None, "" or "0" mean the CPU.

        Raises:
            ConfigError: the text is none of those forms.
        """
        if text is None or text.strip() in ("", "0", "cpu", "none"):
            return None
        match = _REQUEST.match(text)
        if match is None:
            raise ConfigError(f"--gpus {text!r}: expected N or NxTYPE, e.g. 1, 4 or 8xH100 (0 or unset: the CPU)")
        count = int(match["count"] or match["count2"] or 1)
        kind = match["kind"] or match["kind2"]
        if count < 1:
            return None
        return cls(count, kind.upper() if kind and kind.islower() else kind)

    @property
    def accelerators(self) -> str:
        """SkyPilot's `accelerators:` value, `TYPE:N`.

        Raises:
            ConfigError: the request names no type (a cloud needs one).
        """
        if self.kind is None:
            raise ConfigError(
                f"--gpus {self.count}: a cloud run needs the GPU type as well, e.g. --gpus {self.count}xH100 "
                f"(`sky gpus list` shows what the enabled clouds offer)"
            )
        return f"{self.kind}:{self.count}"

    def __str__(self) -> str:
        """`8xH100`, or `2 GPUs` when the type is open."""
        return f"{self.count}x{self.kind}" if self.kind else f"{self.count} GPU{'s' if self.count != 1 else ''}"


@dataclass(frozen=True, slots=True)
class GpuSplit:
    """How one machine's GPUs are used: `vllm` for the generation server (head only), `trainer` for training.

    With one GPU there is no vLLM server (it needs a GPU of its own: NCCL refuses to share one with the trainer),
    and the trainer generates with its own model.
    """

    gpus: int
    vllm: int

    @property
    def trainer(self) -> int:
        """Training processes per machine."""
        return self.gpus - self.vllm

    @property
    def uses_vllm(self) -> bool:
        """Whether a vLLM server generates (on the head's first `vllm` GPUs)."""
        return self.vllm > 0


@dataclass(frozen=True, slots=True)
class Placement:
    """Where the run goes: the provider, the GPUs per machine (None: CPU), the machines, the SkyPilot infra."""

    provider: str = "local"
    gpus: GpuRequest | None = None
    nodes: int = 1
    infra: str | None = None
    vllm_gpus: int = 1

    @property
    def remote(self) -> bool:
        """Whether SkyPilot provisions the machines."""
        return self.provider != "local"

    @property
    def sky_infra(self) -> str | None:
        """The `infra:` of the SkyPilot task: `primeintellect` for prime, else `--infra` (None: SkyPilot chooses)."""
        return PRIME_INFRA if self.provider == "prime" else self.infra

    @property
    def cloud(self) -> str | None:
        """The cloud part of the infra (`aws` of `aws/us-east-1`), lower case, aliases resolved."""
        if self.sky_infra is None:
            return None
        name = self.sky_infra.split("/", 1)[0].lower()
        return _INFRA_ALIASES.get(name, name)

    @property
    def split(self) -> GpuSplit | None:
        """Each machine's GPU split (None on the CPU): vLLM on the first GPU(s) when there are two or more."""
        if self.gpus is None:
            return None
        return GpuSplit(self.gpus.count, self.vllm_gpus if self.gpus.count > 1 else 0)

    def problems(self) -> list[str]:
        """Every reason this placement cannot run, each with the fix; empty when it can."""
        problems: list[str] = []
        if self.provider not in PROVIDERS:
            problems.append(f"--provider {self.provider!r}: expected one of {', '.join(PROVIDERS)}")
        if self.nodes < 1:
            problems.append(f"--nodes must be at least 1, got {self.nodes}")
        if self.vllm_gpus < 1:
            problems.append(f"--vllm-gpus must be at least 1, got {self.vllm_gpus}")
        if self.infra is not None and self.provider != "skypilot":
            problems.append(f"--infra {self.infra!r} applies to --provider skypilot (prime means infra primeintellect)")
        if self.remote:
            problems += self._remote_problems()
        elif self.nodes > 1:
            problems.append(
                f"--nodes {self.nodes} needs machines SkyPilot provisions: add --provider skypilot (with a cloud "
                "that allows several nodes, e.g. --infra aws)"
            )
        if self.gpus is not None and 1 < self.gpus.count <= self.vllm_gpus:
            problems.append(
                f"--gpus {self.gpus} with --vllm-gpus {self.vllm_gpus} leaves no GPU for training; vLLM and the "
                "trainer need different GPUs: use more GPUs or fewer for vLLM"
            )
        return problems

    def _remote_problems(self) -> list[str]:
        if self.gpus is None:
            return [f"--provider {self.provider} rents GPU machines: say which, e.g. --gpus 8xH100"]
        problems = []
        if self.gpus.kind is None:
            problems.append(
                f"--gpus {self.gpus.count}: a cloud run needs the GPU type as well, e.g. --gpus {self.gpus.count}xH100"
            )
        if self.nodes > 1 and self.cloud in SINGLE_NODE_INFRAS:
            name = "Prime Intellect" if self.cloud == PRIME_INFRA else self.cloud
            problems.append(
                f"--nodes {self.nodes}: {name} launches single machines only through SkyPilot; use --nodes 1 (up "
                "to 8 GPUs), or --provider skypilot with a multi-node cloud (aws, gcp, azure, lambda, nebius, "
                "kubernetes)"
            )
        if self.nodes > 1 and self.gpus.count < 2:
            problems.append(
                f"--nodes {self.nodes} with one GPU per machine: the head's vLLM server would leave it no GPU to "
                "train on, and every machine must run the same number of training processes; use 2 or more GPUs "
                "per machine"
            )
        return problems

    def check(self) -> None:
        """Raise one ConfigError listing every problem.

        Raises:
            ConfigError: the placement cannot run.
        """
        problems = self.problems()
        if problems:
            count = len(problems)
            header = f"{count} problem{'s' if count != 1 else ''} with where to train"
            raise ConfigError("\n  ".join([header, *problems]))
