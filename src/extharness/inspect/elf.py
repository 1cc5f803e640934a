"""ELF summaries of shared libraries, read with pyelftools from bytes (never executed)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection, GNUVerNeedSection
from elftools.elf.sections import SymbolTableSection

from extharness.inspect.operand import GlibcVersion

#: ELF e_machine -> OCI architecture name.
MACHINE_TO_ARCH = {
    "EM_X86_64": "amd64",
    "EM_AARCH64": "arm64",
    "EM_386": "386",
    "EM_ARM": "arm",
    "EM_PPC64": "ppc64le",
    "EM_S390": "s390x",
    "EM_RISCV": "riscv64",
    "EM_MIPS": "mips64le",
    "EM_LOONGARCH": "loong64",
}

ELF_MAGIC = b"\x7fELF"


def is_elf(data: bytes | None) -> bool:
    return bool(data) and data[:4] == ELF_MAGIC  # type: ignore[index]


def glibc_version(text: str) -> GlibcVersion | None:
    if not text.startswith("GLIBC_"):
        return None
    return GlibcVersion.parse(text[len("GLIBC_") :])


@dataclass
class ElfSummary:
    elf_type: str  # ET_DYN, ET_EXEC, ...
    machine: str  # e_machine name
    elf_class: int  # 32 or 64
    needed: list[str] = field(default_factory=list)
    rpath: list[str] = field(default_factory=list)
    runpath: list[str] = field(default_factory=list)
    soname: str | None = None
    glibc_needed: list[GlibcVersion] = field(default_factory=list)  # GLIBC_x.y versions required
    glibc_defined: list[GlibcVersion] = field(default_factory=list)  # versions a libc defines
    dynamic_symbols: set[str] = field(default_factory=set)
    has_interpreter: bool = False

    @property
    def architecture(self) -> str:
        return MACHINE_TO_ARCH.get(self.machine, self.machine)

    @property
    def max_glibc_needed(self) -> GlibcVersion | None:
        return max(self.glibc_needed) if self.glibc_needed else None

    @property
    def has_pg_module_magic(self) -> bool:
        return "Pg_magic_func" in self.dynamic_symbols


class NotElf(ValueError):
    pass


def _glibc_versions(section: GNUVerNeedSection | GNUVerDefSection, file_size: int) -> list[GlibcVersion]:
    """The GLIBC_x.y names of a version section (.gnu.version_r or .gnu.version_d).

    pyelftools walks as many entries as the section header claims (``sh_info``, up to 2**32)
    and as many auxiliary entries as each entry claims, even past the end of the chain (a next
    offset of 0): a crafted file loops for hours. A real chain ends at next == 0, and every
    entry takes at least 8 bytes of the section, which bounds the walk.
    """
    found: list[GlibcVersion] = []
    entry_next, aux_next = f"{section.field_prefix}_next", f"{section.field_prefix}a_next"
    budget = min(section["sh_size"], file_size) // 8 + 1
    for entry, auxiliaries in section.iter_versions():
        for aux in auxiliaries:
            budget -= 1
            if budget < 0:
                break
            version = glibc_version(aux.name)
            if version is not None:
                found.append(version)
            if aux[aux_next] == 0:
                break
        budget -= 1
        if budget < 0:
            raise ELFError(f"{section.name}: more version entries than the section can hold")
        if entry[entry_next] == 0:
            break
    return found


def summarize(data: bytes) -> ElfSummary:
    """Summarise an ELF file; raises NotElf for anything pyelftools cannot parse."""
    if not is_elf(data):
        raise NotElf("no ELF magic")
    try:
        elf = ELFFile(io.BytesIO(data))
        summary = ElfSummary(
            elf_type=str(elf.header["e_type"]),
            machine=str(elf.header["e_machine"]),
            elf_class=elf.elfclass,
        )
        for segment in elf.iter_segments():
            if segment["p_type"] == "PT_INTERP":
                summary.has_interpreter = True
        for section in elf.iter_sections():
            if isinstance(section, DynamicSection):
                for tag in section.iter_tags():
                    if tag.entry.d_tag == "DT_NEEDED":
                        summary.needed.append(tag.needed)
                    elif tag.entry.d_tag == "DT_RPATH":
                        summary.rpath.extend(p for p in tag.rpath.split(":") if p)
                    elif tag.entry.d_tag == "DT_RUNPATH":
                        summary.runpath.extend(p for p in tag.runpath.split(":") if p)
                    elif tag.entry.d_tag == "DT_SONAME":
                        summary.soname = tag.soname
            elif isinstance(section, GNUVerNeedSection):
                summary.glibc_needed.extend(_glibc_versions(section, len(data)))
            elif isinstance(section, GNUVerDefSection):
                summary.glibc_defined.extend(_glibc_versions(section, len(data)))
            elif isinstance(section, SymbolTableSection) and section.name == ".dynsym":
                for symbol in section.iter_symbols():
                    if symbol.name and symbol["st_shndx"] != "SHN_UNDEF":
                        summary.dynamic_symbols.add(symbol.name)
        return summary
    except (
        ELFError,
        ValueError,
        KeyError,
        AttributeError,
        AssertionError,
        UnicodeDecodeError,
        TypeError,
        IndexError,
        OverflowError,
        EOFError,
        MemoryError,
    ) as exc:
        raise NotElf(f"malformed ELF ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # pyelftools raises many things on hostile input
        raise NotElf(f"malformed ELF ({type(exc).__name__})") from None
