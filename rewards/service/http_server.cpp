#include "rewards/service/http_server.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <thread>

#include "core/error.h"
#include "core/log.h"

namespace grpo::rewards {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

void split_host_port(const std::string& address, const char* what, std::string* host, int* port) {
  size_t colon = address.rfind(':');
  GRPO_CHECK(colon != std::string::npos && colon + 1 < address.size(),
             what << " \"" << address << "\": expected HOST:PORT (e.g. 127.0.0.1:9090)");
  std::string h = address.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  GRPO_CHECK(!h.empty(), what << " \"" << address << "\": missing host (use 127.0.0.1 for loopback only)");
  std::string p = address.substr(colon + 1);
  int value = 0;
  for (char c : p) {
    GRPO_CHECK(c >= '0' && c <= '9' && value <= 65535, what << " \"" << address << "\": port must be 0..65535");
    value = value * 10 + (c - '0');
  }
  GRPO_CHECK(value <= 65535, what << " \"" << address << "\": port must be 0..65535");
  *host = h;
  *port = value;
}

namespace {

// One connection: read a request, answer, close.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, const HttpServer::Handler& handler) : stream_(std::move(socket)), handler_(handler) {}

  void start() {
    stream_.expires_after(std::chrono::seconds(10));
    http::async_read(stream_, buffer_, request_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

 private:
  void on_read(beast::error_code ec) {
    if (ec) return;  // timeout, reset or garbage: drop the connection
    response_.version(request_.version());
    response_.keep_alive(false);
    response_.set(http::field::server, "grpo");
    if (request_.method() != http::verb::get && request_.method() != http::verb::head) {
      response_.result(http::status::method_not_allowed);
      response_.set(http::field::allow, "GET, HEAD");
      response_.set(http::field::content_type, "text/plain; charset=utf-8");
      response_.body() = "method not allowed\n";
    } else {
      std::string target(request_.target());
      std::string path = target.substr(0, target.find('?'));
      HttpResponse reply;
      try {
        reply = handler_(path);
      } catch (const std::exception& e) {
        reply = HttpResponse{500, "text/plain; charset=utf-8", std::string("internal error: ") + e.what() + "\n"};
      }
      response_.result(static_cast<unsigned>(reply.status));
      response_.set(http::field::content_type, reply.content_type);
      if (request_.method() == http::verb::get) response_.body() = std::move(reply.body);
      else response_.content_length(reply.body.size());
    }
    if (request_.method() == http::verb::get) response_.prepare_payload();
    http::async_write(stream_, response_, [self = shared_from_this()](beast::error_code, size_t) {
      beast::error_code ignored;
      self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    });
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  http::response<http::string_body> response_;
  const HttpServer::Handler& handler_;
};

}  // namespace

struct HttpServer::Impl {
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  Handler handler;
  std::string host;
  int port = 0;
  std::thread thread;
  bool stopped = false;

  void accept() {
    acceptor.async_accept(asio::make_strand(io), [this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
      if (!ec) std::make_shared<Session>(std::move(socket), handler)->start();
      accept();
    });
  }
};

HttpServer::HttpServer(const std::string& listen, Handler handler) : impl_(std::make_unique<Impl>()) {
  impl_->handler = std::move(handler);
  int port = 0;
  split_host_port(listen, "--metrics-listen", &impl_->host, &port);
  beast::error_code ec;
  tcp::resolver resolver(impl_->io);
  auto endpoints = resolver.resolve(impl_->host, std::to_string(port), tcp::resolver::numeric_service, ec);
  GRPO_CHECK(!ec && !endpoints.empty(), "--metrics-listen " << listen << ": cannot resolve host: " << ec.message());
  tcp::endpoint endpoint = endpoints.begin()->endpoint();
  impl_->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl_->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl_->acceptor.bind(endpoint, ec);
  if (!ec) impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  GRPO_CHECK(!ec, "--metrics-listen " << listen << ": cannot listen: " << ec.message());
  impl_->port = impl_->acceptor.local_endpoint().port();
  impl_->accept();
  impl_->thread = std::thread([this] {
    try {
      impl_->io.run();
    } catch (const std::exception& e) {
      GRPO_LOG(error, "metrics HTTP server stopped: " << e.what());
    }
  });
}

HttpServer::~HttpServer() { stop(); }

std::string HttpServer::address() const {
  bool v6 = impl_->host.find(':') != std::string::npos;
  return (v6 ? "[" + impl_->host + "]" : impl_->host) + ":" + std::to_string(impl_->port);
}

int HttpServer::port() const { return impl_->port; }

void HttpServer::stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  beast::error_code ignored;
  impl_->acceptor.close(ignored);  // the io thread is gone: safe to touch the acceptor here
}

}  // namespace grpo::rewards
