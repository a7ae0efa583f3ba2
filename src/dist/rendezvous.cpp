#include "dist/rendezvous.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "ouro/error.h"

namespace fs = std::filesystem;

namespace ouro {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kMagic = 0x4f55524f;  // "OURO": a stray client is refused, not trusted
constexpr uint32_t kVersion = 1;
constexpr const char* kFileHeader = "ouro-rendezvous 1";

Clock::time_point deadline_after(double seconds) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

double seconds_left(Clock::time_point deadline) {
  return std::chrono::duration<double>(deadline - Clock::now()).count();
}

// ---- file ----

std::string to_hex(const std::string& b) {
  static const char* d = "0123456789abcdef";
  std::string h;
  for (unsigned char c : b) h += d[c >> 4], h += d[c & 15];
  return h;
}

bool from_hex(const std::string& h, std::string& out) {
  if (h.size() % 2) return false;
  auto v = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
  out.clear();
  for (size_t i = 0; i < h.size(); i += 2) {
    int a = v(h[i]), b = v(h[i + 1]);
    if (a < 0 || b < 0) return false;
    out += static_cast<char>(a * 16 + b);
  }
  return true;
}

std::string file_rendezvous(const RendezvousOptions& rv, int rank, int world, const std::string& bytes) {
  const fs::path path(rv.path);
  if (rank == 0) {
    // A file left by an earlier job would hand its stale id to ranks that read it first.
    OURO_CHECK(!fs::exists(path), "rank 0: dist.init_path {} already exists (left by an earlier job?); "
               "remove it or give each job its own path", rv.path);
    const fs::path tmp = path.string() + ".tmp." + std::to_string(::getpid());
    {
      std::ofstream out(tmp, std::ios::trunc);
      OURO_CHECK(out.good(), "rank 0: cannot write dist.init_path {} ({})", tmp.string(), std::strerror(errno));
      out << kFileHeader << " " << world << " " << to_hex(bytes) << "\n";
      out.close();
      OURO_CHECK(out.good(), "rank 0: writing dist.init_path {} failed", tmp.string());
    }
    std::error_code ec;
    fs::rename(tmp, path, ec);  // readers see the whole file or none
    OURO_CHECK(!ec, "rank 0: cannot publish dist.init_path {}: {}", rv.path, ec.message());
    return bytes;
  }
  const auto deadline = deadline_after(rv.timeout_s);
  std::string last_problem = "it does not exist";
  while (seconds_left(deadline) > 0) {
    std::ifstream in(path);
    if (in) {
      std::string magic, version, hex;
      int w = 0;
      in >> magic >> version >> w >> hex;
      std::string out;
      if (magic + " " + version != kFileHeader || !from_hex(hex, out)) {
        last_problem = "it is not an ouro rendezvous file";
      } else {
        OURO_CHECK(w == world, "rank {}: dist.init_path {} was written by a job of {} ranks, this one has {}",
                   rank, rv.path, w, world);
        return out;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  fail("rank {}: file rendezvous timed out after {} s (dist.timeout_s) waiting for rank 0 to write "
       "dist.init_path {} ({})", rank, rv.timeout_s, rv.path, last_problem);
}

// ---- tcp ----

// "ranks 2, 5" (or "rank 3"): the ranks other than 0 that have not checked in, for a timeout
// that should say whom the job waited for, not only who waited.
std::string missing_ranks(const std::vector<bool>& seen) {
  std::string list;
  int n = 0;
  for (size_t r = 1; r < seen.size(); ++r)
    if (!seen[r]) list += (n++ ? ", " : "") + std::to_string(r);
  return (n == 1 ? "rank " : "ranks ") + list;
}

class Socket {
 public:
  explicit Socket(int fd = -1) : fd_(fd) {}
  ~Socket() { if (fd_ >= 0) ::close(fd_); }
  Socket(Socket&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Socket& operator=(Socket&& o) noexcept { std::swap(fd_, o.fd_); return *this; }
  int fd() const { return fd_; }

 private:
  int fd_;
};

struct AddrList {
  addrinfo* head = nullptr;
  ~AddrList() { if (head) freeaddrinfo(head); }
};

void resolve(const HostPort& hp, const std::string& addr, int rank, AddrList& out, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (passive) hints.ai_flags = AI_PASSIVE;
  const std::string port = std::to_string(hp.port);
  int rc = getaddrinfo(hp.host.c_str(), port.c_str(), &hints, &out.head);
  OURO_CHECK(rc == 0 && out.head, "rank {}: dist.init_addr {}: cannot resolve host '{}': {}", rank, addr,
             hp.host, gai_strerror(rc));
}

// Waits until fd is readable (POLLIN) or writable (POLLOUT); false at the deadline.
bool wait_fd(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    const double left = seconds_left(deadline);
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, static_cast<int>(std::min(left * 1000.0, 1000.0)) + 1);
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) return false;
  }
}

// Sends/receives exactly n bytes before the deadline; false on timeout or a closed peer.
bool send_all(int fd, const void* p, size_t n, Clock::time_point deadline) {
  const char* c = static_cast<const char*>(p);
  while (n) {
    if (!wait_fd(fd, POLLOUT, deadline)) return false;
    ssize_t k = ::send(fd, c, n, MSG_NOSIGNAL);
    if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (k <= 0) return false;
    c += k, n -= static_cast<size_t>(k);
  }
  return true;
}
bool recv_all(int fd, void* p, size_t n, Clock::time_point deadline) {
  char* c = static_cast<char*>(p);
  while (n) {
    if (!wait_fd(fd, POLLIN, deadline)) return false;
    ssize_t k = ::recv(fd, c, n, 0);
    if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (k <= 0) return false;
    c += k, n -= static_cast<size_t>(k);
  }
  return true;
}

struct Hello {
  uint32_t magic, version, rank, world;
};

std::string tcp_rank0(const RendezvousOptions& rv, int world, const std::string& bytes) {
  const HostPort hp = parse_host_port(rv.addr, "dist.init_addr");
  AddrList addrs;
  resolve(hp, rv.addr, 0, addrs, true);
  Socket listener;
  std::string why = "no usable address";
  for (addrinfo* a = addrs.head; a; a = a->ai_next) {
    Socket s(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
    if (s.fd() < 0) continue;
    int one = 1;
    ::setsockopt(s.fd(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(s.fd(), a->ai_addr, a->ai_addrlen) != 0 || ::listen(s.fd(), world) != 0) {
      why = std::strerror(errno);
      continue;
    }
    listener = std::move(s);
    break;
  }
  OURO_CHECK(listener.fd() >= 0, "rank 0: cannot listen on dist.init_addr {}: {} (rank 0 must run on "
             "that host, and the port must be free)", rv.addr, why);
  const auto deadline = deadline_after(rv.timeout_s);
  std::vector<Socket> peers;
  std::vector<bool> seen(world, false);
  const uint32_t len = static_cast<uint32_t>(bytes.size());
  while (static_cast<int>(peers.size()) < world - 1) {
    OURO_CHECK(wait_fd(listener.fd(), POLLIN, deadline),
               "rank 0: tcp rendezvous at {} timed out after {} s (dist.timeout_s): {} of {} other "
               "ranks connected; {} did not arrive", rv.addr, rv.timeout_s, peers.size(), world - 1,
               missing_ranks(seen));
    Socket c(::accept4(listener.fd(), nullptr, nullptr, SOCK_CLOEXEC));
    if (c.fd() < 0) continue;
    // A peer that connects but says nothing must not hold the rendezvous past its deadline.
    Hello h{};
    const auto hello_deadline = std::min(deadline, deadline_after(10));
    if (!recv_all(c.fd(), &h, sizeof h, hello_deadline) || h.magic != kMagic) continue;  // a stray client
    OURO_CHECK(h.version == kVersion, "rank 0: a peer at {} speaks rendezvous version {}, this one {}",
               rv.addr, h.version, kVersion);
    OURO_CHECK(static_cast<int>(h.world) == world, "rank 0: rank {} reached {} as one of {} ranks; this "
               "job has {}", h.rank, rv.addr, h.world, world);
    OURO_CHECK(h.rank >= 1 && static_cast<int>(h.rank) < world && !seen[h.rank],
               "rank 0: a peer at {} claims rank {}, which is {}", rv.addr, h.rank,
               h.rank == 0 || static_cast<int>(h.rank) >= world ? "out of range" : "taken twice");
    seen[h.rank] = true;
    peers.push_back(std::move(c));
  }
  // Every rank has checked in: only now hand out the bytes, so none starts alone.
  for (auto& p : peers)
    OURO_CHECK(send_all(p.fd(), &len, sizeof len, deadline) && send_all(p.fd(), bytes.data(), len, deadline),
               "rank 0: tcp rendezvous at {}: a peer disconnected before receiving the id", rv.addr);
  return bytes;
}

std::string tcp_peer(const RendezvousOptions& rv, int rank, int world) {
  const HostPort hp = parse_host_port(rv.addr, "dist.init_addr");
  AddrList addrs;
  resolve(hp, rv.addr, rank, addrs, false);
  const auto deadline = deadline_after(rv.timeout_s);
  std::string why = "no attempt";
  // Rank 0 may not listen yet: refused connections are retried until the deadline.
  while (seconds_left(deadline) > 0) {
    for (addrinfo* a = addrs.head; a; a = a->ai_next) {
      Socket s(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol));
      if (s.fd() < 0) continue;
      int rc = ::connect(s.fd(), a->ai_addr, a->ai_addrlen);
      if (rc != 0 && errno == EINPROGRESS) {
        const auto attempt = std::min(deadline, deadline_after(2));
        int err = ETIMEDOUT;
        socklen_t l = sizeof err;
        if (wait_fd(s.fd(), POLLOUT, attempt)) ::getsockopt(s.fd(), SOL_SOCKET, SO_ERROR, &err, &l);
        rc = err == 0 ? 0 : -1;
        errno = err;
      }
      if (rc != 0) {
        why = std::strerror(errno);
        continue;
      }
      Hello h{kMagic, kVersion, static_cast<uint32_t>(rank), static_cast<uint32_t>(world)};
      uint32_t len = 0;
      OURO_CHECK(send_all(s.fd(), &h, sizeof h, deadline) && recv_all(s.fd(), &len, sizeof len, deadline),
                 "rank {}: tcp rendezvous with rank 0 at {}: no id within {} s (dist.timeout_s): rank 0 "
                 "closed the connection or waits for other ranks", rank, rv.addr, rv.timeout_s);
      OURO_CHECK(len <= 4096, "rank {}: tcp rendezvous at {}: rank 0 sent a {}-byte id", rank, rv.addr, len);
      std::string out(len, '\0');
      OURO_CHECK(recv_all(s.fd(), out.data(), len, deadline),
                 "rank {}: tcp rendezvous at {}: the id was cut short", rank, rv.addr);
      return out;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  fail("rank {}: tcp rendezvous timed out after {} s (dist.timeout_s): cannot reach rank 0 at "
       "dist.init_addr {} ({})", rank, rv.timeout_s, rv.addr, why);
}

}  // namespace

RendezvousOptions resolve_rendezvous(const DistConfig& dist) {
  RendezvousOptions rv;
  rv.timeout_s = dist.timeout_s;
  rv.path = dist.init_path;
  rv.addr = dist.init_addr;
  DistInit init = dist.init;
  const char* ouro_addr = std::getenv("OURO_INIT_ADDR");
  const char* master = std::getenv("MASTER_ADDR");
  if (init == DistInit::auto_) {
    const std::string launcher = detect_dist_env().launcher;
    init = launcher == "openmpi" || launcher == "mpich" ? DistInit::mpi
           : (ouro_addr && *ouro_addr) || (master && *master) ? DistInit::env
                                                              : DistInit::mpi;
  }
  // dist itself was validated with the config (DistConfig::validate); only the environment's
  // address is new here.
  switch (init) {
    case DistInit::auto_:
    case DistInit::mpi: rv.method = RendezvousMethod::mpi; break;
    case DistInit::file: rv.method = RendezvousMethod::file; break;
    case DistInit::tcp: rv.method = RendezvousMethod::tcp; break;
    case DistInit::env: {
      rv.method = RendezvousMethod::tcp;
      if (ouro_addr && *ouro_addr) {
        rv.addr = ouro_addr;
      } else {
        const char* port = std::getenv("MASTER_PORT");
        OURO_CHECK(master && *master && port && *port, "dist.init = env needs $OURO_INIT_ADDR (host:port) "
                   "or $MASTER_ADDR and $MASTER_PORT");
        rv.addr = std::string(master) + ":" + port;
      }
      parse_host_port(rv.addr, "the environment's rendezvous address");
      break;
    }
  }
  return rv;
}

std::string rendezvous_bytes(const RendezvousOptions& rv, int rank, int world, const std::string& bytes,
                             Communicator& host) {
  if (world == 1) return bytes;
  if (rv.method == RendezvousMethod::mpi) {
    uint64_t len = bytes.size();
    host.broadcast(&len, sizeof len, 0);
    std::string out = rank == 0 ? bytes : std::string(len, '\0');
    host.broadcast(out.data(), len, 0);
    return out;
  }
  if (rv.method == RendezvousMethod::file) return file_rendezvous(rv, rank, world, bytes);
  return rank == 0 ? tcp_rank0(rv, world, bytes) : tcp_peer(rv, rank, world);
}

void rendezvous_finished(const RendezvousOptions& rv, int rank) {
  if (rv.method != RendezvousMethod::file || rank != 0) return;
  std::error_code ec;
  fs::remove(rv.path, ec);
}

}  // namespace ouro
