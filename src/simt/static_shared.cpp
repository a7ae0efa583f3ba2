// Finding static __shared__ variables: see static_shared.h. The symbol tables are read once per
// process (the files of the executable and its shared objects, mapped read-only); each OS
// thread then resolves the (module, offset) pairs against its own TLS blocks once, through
// dl_iterate_phdr's dlpi_tls_data. A binary stripped of its symbol table has no names to find:
// its static shared memory is then left as the previous block wrote it (dynamic shared memory is
// filled regardless).
#include "simt/static_shared.h"

#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

namespace ouro::simt::detail {
namespace {

// The mangled-name fragment of the ABI tag that <ouro/cuda.h> puts on every __shared__ variable.
constexpr const char* kTag = "B11ouro_shared";

struct TlsSymbol {
  std::size_t module;  // dlpi_tls_modid
  std::size_t offset;  // within the module's TLS block
  std::size_t size;
};

// Appends the tagged TLS symbols of one ELF file.
void scan_file(const std::string& path, std::size_t module, std::vector<TlsSymbol>& out) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  struct stat st {};
  if (fstat(fd, &st) != 0 || st.st_size < off_t(sizeof(Elf64_Ehdr))) {
    close(fd);
    return;
  }
  const std::size_t size = std::size_t(st.st_size);
  void* map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return;
  const auto* base = static_cast<const unsigned char*>(map);
  const auto* eh = reinterpret_cast<const Elf64_Ehdr*>(base);
  const bool elf64 = std::memcmp(eh->e_ident, ELFMAG, SELFMAG) == 0 && eh->e_ident[EI_CLASS] == ELFCLASS64;
  if (elf64 && eh->e_shoff != 0 && eh->e_shoff + std::size_t(eh->e_shnum) * sizeof(Elf64_Shdr) <= size) {
    const auto* sh = reinterpret_cast<const Elf64_Shdr*>(base + eh->e_shoff);
    // .symtab when present (it has the local symbols: function-local statics); .dynsym only
    // holds exported ones.
    for (const Elf32_Word want : {Elf32_Word(SHT_SYMTAB), Elf32_Word(SHT_DYNSYM)}) {
      bool found = false;
      for (int i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != want || sh[i].sh_link >= eh->e_shnum) continue;
        const Elf64_Shdr& strs = sh[sh[i].sh_link];
        if (sh[i].sh_offset + sh[i].sh_size > size || strs.sh_offset + strs.sh_size > size) continue;
        found = true;
        const auto* syms = reinterpret_cast<const Elf64_Sym*>(base + sh[i].sh_offset);
        const char* names = reinterpret_cast<const char*>(base + strs.sh_offset);
        const std::size_t n = sh[i].sh_size / sizeof(Elf64_Sym);
        for (std::size_t s = 0; s < n; s++) {
          if (ELF64_ST_TYPE(syms[s].st_info) != STT_TLS || syms[s].st_size == 0) continue;
          if (syms[s].st_name >= strs.sh_size) continue;
          if (std::strstr(names + syms[s].st_name, kTag) == nullptr) continue;
          out.push_back({module, std::size_t(syms[s].st_value), std::size_t(syms[s].st_size)});
        }
      }
      if (found) break;
    }
  }
  munmap(map, size);
}

std::vector<TlsSymbol> scan_modules() {
  std::vector<TlsSymbol> out;
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) {
        if (info->dlpi_tls_modid == 0) return 0;  // the module has no TLS
        std::string path = info->dlpi_name && *info->dlpi_name ? info->dlpi_name : "/proc/self/exe";
        scan_file(path, info->dlpi_tls_modid, *static_cast<std::vector<TlsSymbol>*>(data));
        return 0;
      },
      &out);
  // Symbols of one variable can appear twice (.symtab of a module seen as two paths): dedup.
  std::sort(out.begin(), out.end(), [](const TlsSymbol& a, const TlsSymbol& b) {
    return a.module != b.module ? a.module < b.module : a.offset < b.offset;
  });
  return out;
}

const std::vector<TlsSymbol>& tagged_symbols() {
  static const std::vector<TlsSymbol> symbols = scan_modules();
  return symbols;
}

struct Span {
  unsigned char* begin;
  std::size_t size;
};

// This thread's copies of the tagged variables, adjacent ones merged.
std::vector<Span> resolve_for_this_thread() {
  struct Ctx {
    const std::vector<TlsSymbol>* symbols;
    std::vector<Span> spans;
  } ctx{&tagged_symbols(), {}};
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) {
        auto& c = *static_cast<Ctx*>(data);
        if (info->dlpi_tls_modid == 0 || info->dlpi_tls_data == nullptr) return 0;
        auto* block = static_cast<unsigned char*>(info->dlpi_tls_data);
        for (const TlsSymbol& s : *c.symbols)
          if (s.module == info->dlpi_tls_modid) c.spans.push_back({block + s.offset, s.size});
        return 0;
      },
      &ctx);
  std::sort(ctx.spans.begin(), ctx.spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
  std::vector<Span> merged;
  for (const Span& s : ctx.spans) {
    if (!merged.empty() && s.begin <= merged.back().begin + merged.back().size) {
      const auto end = std::max(merged.back().begin + merged.back().size, s.begin + s.size);
      merged.back().size = std::size_t(end - merged.back().begin);
    } else {
      merged.push_back(s);
    }
  }
  return merged;
}

}  // namespace

void fill_static_shared() {
  thread_local const std::vector<Span> spans = resolve_for_this_thread();
  for (const Span& s : spans) std::memset(s.begin, 0xFF, s.size);
}

std::size_t static_shared_bytes() {
  std::size_t total = 0;
  for (const TlsSymbol& s : tagged_symbols()) total += s.size;
  return total;
}

}  // namespace ouro::simt::detail
