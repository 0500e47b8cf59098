// A tiny HTTP/1.1 server (Boost.Beast on Asio, one thread) for a service's /healthz and
// /metrics. GET and HEAD only; one request per connection; a client has 10 s to send its
// request. Binds the address it is given (127.0.0.1 unless told otherwise).
#pragma once

#include <functional>
#include <memory>
#include <string>

namespace grpo::rewards {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

class HttpServer {
 public:
  // Called on the server's thread with the request path ("/metrics"; query string removed).
  using Handler = std::function<HttpResponse(const std::string& path)>;

  // Listens on "HOST:PORT" (IPv6 as "[::1]:PORT"; port 0 picks a free one) and starts serving.
  // Throws grpo::Error when the address is malformed or cannot be bound.
  HttpServer(const std::string& listen, Handler handler);
  ~HttpServer();  // stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // "HOST:PORT" with the port actually bound.
  std::string address() const;
  int port() const;
  // Closes the listener and open connections and joins the thread. Idempotent.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Splits "HOST:PORT" / "[V6]:PORT" into host and port; throws grpo::Error naming `what`.
void split_host_port(const std::string& address, const char* what, std::string* host, int* port);

}  // namespace grpo::rewards
