// SPDX-License-Identifier: Apache-2.0
// Virtual board: the Verilated hw.system.LinkedAccelerator serving its host link on a TCP port.
//
// One client at a time; its bytes go to the link and the link's bytes come back, so a driver
// opens socket://127.0.0.1:PORT as it would open /dev/ttyUSB0. Built by sim/vboard.py
// (docs/simulation.md, "Virtual board"); run it through `lightformer vboard`.
//
//   vboard_sim --port N [--host ADDR] [--once] [--stats PATH]
//              --timeout-cycles T [--divisor D]         (D: only in a VB_UART build)
//
// The first line on stdout is the URL served (socket://HOST:PORT; --port 0 picks a free port).
// A VB_UART build drives the rx pin bit by bit at D clock cycles per bit and decodes the tx
// pin; the default build moves a byte per cycle through the frame engine's stream ports.
//
// The clock runs only while something can happen: bytes to deliver, a request begun but not
// finished (so the engine's receive timeout still fires, T cycles after its last byte), a
// running program, or a reply in progress. Otherwise the process sleeps in poll(). SIGINT,
// SIGTERM, or the client hanging up with --once end it; the totals go to stderr (and --stats).
//
// Verilator spells the Verilog ports i_stream__valid etc. with "__" escaped as "___05F".

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <deque>
#include <memory>
#include <string>

#include "Vvboard.h"
#include "verilated.h"

namespace {

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

constexpr uint8_t kSofRequest = 0xA5;    // hw.link.protocol.SOF_REQUEST
constexpr uint8_t kSofReply = 0x5A;      // hw.link.protocol.SOF_REPLY
constexpr size_t kQueueLimit = 1 << 20;  // bytes buffered each way before back-pressure
constexpr uint64_t kBatch = 256;         // cycles between two looks at the socket

struct Options {
    long port = -1;
    std::string host = "127.0.0.1";
    bool once = false;
    std::string stats;
    uint64_t timeout = 0;
    uint64_t divisor = 0;
};

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr,
                 "vboard: %s\nusage: vboard_sim --port N [--host ADDR] [--once] [--stats PATH] "
                 "--timeout-cycles T [--divisor D]\n", why);
    std::exit(2);
}

uint64_t number(const char* flag, const char* text, uint64_t lo, uint64_t hi) {
    char* end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(text, &end, 10);
    if (errno || !*text || *end || v < lo || v > hi) {
        std::fprintf(stderr, "vboard: %s must be an integer in [%" PRIu64 ", %" PRIu64
                     "], not '%s'\n", flag, lo, hi, text);
        std::exit(2);
    }
    return v;
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) usage(("missing value after " + a).c_str());
            return argv[++i];
        };
        if (a == "--port") o.port = static_cast<long>(number("--port", value(), 0, 65535));
        else if (a == "--host") o.host = value();
        else if (a == "--once") o.once = true;
        else if (a == "--stats") o.stats = value();
        else if (a == "--timeout-cycles") o.timeout = number(a.c_str(), value(), 1, 1ull << 40);
        else if (a == "--divisor") o.divisor = number(a.c_str(), value(), 4, 1u << 20);
        else if (a.rfind("+verilator+", 0) == 0) continue;
        else usage(("unknown argument " + a).c_str());
    }
    if (o.port < 0) usage("--port is required");
    if (!o.timeout) usage("--timeout-cycles is required");
#ifdef VB_UART
    if (!o.divisor) usage("--divisor is required (a UART build)");
#else
    if (o.divisor) usage("--divisor applies only to a UART build");
#endif
    return o;
}

// Splits a byte stream into frames (start byte, `header` bytes whose last is the payload
// length, the payload, the CRC) the way the engine's receiver does; take() is true at the end
// of a frame.
struct FrameSplitter {
    uint8_t sof;
    unsigned header;
    enum { kIdle, kHeader, kPayload, kCrc } state = kIdle;
    unsigned left = 0;

    bool take(uint8_t byte) {
        switch (state) {
        case kIdle:
            if (byte == sof) { state = kHeader; left = header; }
            return false;
        case kHeader:
            if (--left) return false;
            state = byte ? kPayload : kCrc;
            left = byte ? byte : 2;
            return false;
        case kPayload:
            if (--left == 0) { state = kCrc; left = 2; }
            return false;
        case kCrc:
            if (--left) return false;
            state = kIdle;
            return true;
        }
        return false;
    }
    bool open() const { return state != kIdle; }
};

// What the engine still owes: a request begun and not ended (it times out `timeout` cycles
// after its last byte and is answered then), and replies to finished requests. While either
// holds, the clock must run even though no byte moves.
struct LinkTracker {
    FrameSplitter request{kSofRequest, 3};
    FrameSplitter reply{kSofReply, 4};
    uint64_t owed = 0;   // finished requests not yet answered
    uint64_t last = 0;   // cycle of the last byte either way

    void took(uint8_t byte, uint64_t cycle) {
        last = cycle;
        owed += request.take(byte);
    }
    // Returns true at the end of a reply frame.
    bool gave(uint8_t byte, uint64_t cycle) {
        last = cycle;
        if (!reply.take(byte)) return false;
        if (owed) --owed;
        else request.state = FrameSplitter::kIdle;   // a TIMEOUT reply to a partial request
        return true;
    }
    // A byte lost in the PHY (overrun, framing error) leaves the engine's state unknown: wait
    // out a timeout as if a request had begun.
    void lost(uint64_t cycle) {
        request.state = FrameSplitter::kHeader;
        request.left = 3;
        last = cycle;
    }
    bool waiting(uint64_t cycle, uint64_t timeout) {
        if (cycle - last > timeout) {        // the engine has long answered or timed out
            request.state = reply.state = FrameSplitter::kIdle;
            owed = 0;
        }
        return owed || request.open() || reply.open();
    }
};

// Host side of the serial line: bits out on rx, bits in from tx, `divisor` cycles per bit.
struct HostUart {
    uint64_t divisor;
    int tx_bit = -1;           // bit being sent (0 start, 1..8 data, 9 stop); -1 idle
    uint64_t tx_count = 0;
    uint8_t tx_byte = 0;
    enum { kIdle, kStart, kData, kStop } rx_state = kIdle;
    uint64_t rx_count = 0;
    int rx_bits = 0;
    uint8_t rx_byte = 0;
    uint64_t frame_errors = 0;

    int line() const {
        if (tx_bit < 0 || tx_bit == 9) return 1;
        if (tx_bit == 0) return 0;
        return (tx_byte >> (tx_bit - 1)) & 1;
    }
    // One cycle of the sender; returns true when a byte's stop bit has ended.
    bool send_step(std::deque<uint8_t>& q) {
        if (tx_bit < 0) {
            if (q.empty()) return false;
            tx_byte = q.front();
            q.pop_front();
            tx_bit = 0;
            tx_count = divisor;
        }
        if (--tx_count) return false;
        tx_count = divisor;
        if (++tx_bit < 10) return false;
        tx_bit = -1;
        return true;
    }
    bool sending() const { return tx_bit >= 0; }
    // One sample of the device's tx pin; returns true with a byte in `out`.
    bool receive_step(int pin, uint8_t& out) {
        switch (rx_state) {
        case kIdle:
            if (!pin) { rx_state = kStart; rx_count = divisor / 2; }
            return false;
        case kStart:
            if (--rx_count) return false;
            if (pin) { rx_state = kIdle; return false; }
            rx_state = kData; rx_count = divisor; rx_bits = 0; rx_byte = 0;
            return false;
        case kData:
            if (--rx_count) return false;
            rx_byte = static_cast<uint8_t>(rx_byte >> 1 | (pin ? 0x80 : 0));
            rx_count = divisor;
            if (++rx_bits == 8) rx_state = kStop;
            return false;
        case kStop:
            if (--rx_count) return false;
            rx_state = kIdle;
            if (!pin) { ++frame_errors; return false; }
            out = rx_byte;
            return true;
        }
        return false;
    }
    bool receiving() const { return rx_state != kIdle; }
};

struct Board {
    std::unique_ptr<VerilatedContext> ctx{new VerilatedContext};
    std::unique_ptr<Vvboard> top;
    uint64_t cycles = 0, busy_cycles = 0, bytes_in = 0, bytes_out = 0, lost = 0;
    LinkTracker link;
    bool answered = false;     // a reply frame ended in the last cycle
#ifdef VB_UART
    HostUart uart;
#endif

    explicit Board(uint64_t divisor) {
        top.reset(new Vvboard{ctx.get()});
#ifdef VB_UART
        uart.divisor = divisor;
        top->rx = 1;
#else
        (void)divisor;
        top->i_stream___05Fvalid = 0;
        top->o_stream___05Fready = 0;
#endif
        // The design resets itself for its first 4 cycles (sim.vboard.POWER_ON_CYCLES): it
        // has no rst port, so that Verilator evaluates its logic once per clock edge.
        for (int i = 0; i < 6; ++i) edge();
        cycles = 0;
    }
    ~Board() { top->final(); }

    void edge() {
        top->clk = 0;
        top->eval();
        top->clk = 1;
        top->eval();
    }

    // One clock cycle: inputs set and sampled with the clock low, then the rising edge.
    void cycle(std::deque<uint8_t>& in, std::deque<uint8_t>& out) {
#ifdef VB_UART
        answered = false;
        if (uart.send_step(in)) {
            link.took(uart.tx_byte, cycles);
            ++bytes_in;
        }
        top->rx = uart.line();
        top->clk = 0;
        top->eval();
        top->clk = 1;
        top->eval();
        if (top->overrun || top->frame_error) {
            ++lost;
            link.lost(cycles);
        }
        uint8_t byte;
        if (uart.receive_step(top->tx, byte)) {
            out.push_back(byte);
            ++bytes_out;
            answered = link.gave(byte, cycles);
        }
#else
        answered = false;
        top->i_stream___05Fvalid = !in.empty();
        if (!in.empty()) top->i_stream___05Fpayload = in.front();
        top->o_stream___05Fready = out.size() < kQueueLimit;
        top->clk = 0;
        top->eval();
        const bool took = top->i_stream___05Fvalid && top->i_stream___05Fready;
        const bool gave = top->o_stream___05Fvalid && top->o_stream___05Fready;
        const uint8_t reply = top->o_stream___05Fpayload;
        top->clk = 1;
        top->eval();
        if (took) {
            link.took(in.front(), cycles);
            in.pop_front();
            ++bytes_in;
        }
        if (gave) {
            out.push_back(reply);
            ++bytes_out;
            answered = link.gave(reply, cycles);
        }
#endif
        busy_cycles += top->busy;
        ++cycles;
    }

    // Whether the clock must run: bytes to deliver, a running program, or a reply owed.
    bool active(const std::deque<uint8_t>& in, uint64_t timeout) {
        if (!in.empty() || top->busy || link.waiting(cycles, timeout)) return true;
#ifdef VB_UART
        return uart.sending() || uart.receiving();
#else
        return top->o_stream___05Fvalid;
#endif
    }
};

int listen_on(const Options& o) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) { std::perror("vboard: socket"); std::exit(1); }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(o.port));
    if (inet_pton(AF_INET, o.host.c_str(), &addr.sin_addr) != 1) {
        std::fprintf(stderr, "vboard: --host must be an IPv4 address, not '%s'\n", o.host.c_str());
        std::exit(2);
    }
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
        std::fprintf(stderr, "vboard: cannot listen on %s:%ld: %s\n", o.host.c_str(), o.port,
                     std::strerror(errno));
        std::exit(1);
    }
    if (listen(fd, 4) < 0) { std::perror("vboard: listen"); std::exit(1); }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

int bound_port(int fd) {
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    return ntohs(addr.sin_port);
}

void write_stats(const std::string& path, const Board& b, uint64_t clients) {
    if (path.empty()) return;
    const std::string tmp = path + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    if (!f) { std::perror("vboard: --stats"); return; }
    std::fprintf(f,
                 "{\"cycles\": %" PRIu64 ", \"busy_cycles\": %" PRIu64 ", \"bytes_in\": %" PRIu64
                 ", \"bytes_out\": %" PRIu64 ", \"bytes_lost\": %" PRIu64 ", \"clients\": %" PRIu64
                 "}\n", b.cycles, b.busy_cycles, b.bytes_in, b.bytes_out, b.lost, clients);
    if (std::fclose(f) != 0 || std::rename(tmp.c_str(), path.c_str()) != 0)
        std::perror("vboard: --stats");
}

}  // namespace

int main(int argc, char** argv) {
    const Options o = parse(argc, argv);
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);   // no SA_RESTART: poll() returns at once
    sigaction(SIGTERM, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);
#ifdef __linux__
    // A parent that dies without stopping us (killed by SIGKILL) must not leave a board running.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
#endif

    const int listener = listen_on(o);
    std::printf("socket://%s:%d\n", o.host.c_str(), bound_port(listener));
    std::fflush(stdout);

    Board board(o.divisor);
    // The engine's receive timeout plus its longest silent stretch in between (a WRITE's
    // execution, or a UART byte time): past this, nothing it owes can still come.
    const uint64_t timeout = o.timeout + 4096 + 30 * o.divisor;
    std::deque<uint8_t> in, out;
    int client = -1;
    uint64_t clients = 0;
    char buf[65536];

    while (!g_stop) {
        if (client < 0) {
            client = accept(listener, nullptr, nullptr);
            if (client >= 0) {
                fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK);
                int one = 1;
                setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                ++clients;
                in.clear();
                out.clear();
            }
        }
        bool hung_up = false;
        if (client >= 0 && in.size() < kQueueLimit) {
            ssize_t n = recv(client, buf, sizeof buf, 0);
            if (n > 0) in.insert(in.end(), buf, buf + n);
            else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
                hung_up = true;
        }
        if (client >= 0 && !out.empty()) {
            size_t n = std::min(out.size(), sizeof buf);
            std::copy(out.begin(), out.begin() + static_cast<long>(n), buf);
            ssize_t sent = send(client, buf, n, MSG_NOSIGNAL);
            if (sent > 0) out.erase(out.begin(), out.begin() + sent);
            else if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                hung_up = true;
        }
        if (hung_up) {
            close(client);
            client = -1;
            in.clear();
            out.clear();
            if (o.once) break;
            continue;
        }
        if (board.active(in, timeout)) {
            // Run until the batch ends or a reply is complete, then look at the socket.
            for (uint64_t i = 0; i < kBatch && !g_stop && !board.answered; ++i)
                board.cycle(in, out);
            board.answered = false;
            continue;
        }
        pollfd fds[1] = {{client >= 0 ? client : listener, POLLIN, 0}};
        if (client >= 0 && !out.empty()) fds[0].events |= POLLOUT;
        poll(fds, 1, 200);
    }
    if (client >= 0) close(client);
    close(listener);
    std::fprintf(stderr,
                 "vboard: %" PRIu64 " cycles simulated (%" PRIu64 " busy), %" PRIu64
                 " bytes in, %" PRIu64 " bytes out, %" PRIu64 " client(s)\n",
                 board.cycles, board.busy_cycles, board.bytes_in, board.bytes_out, clients);
    write_stats(o.stats, board, clients);
    return 0;
}
