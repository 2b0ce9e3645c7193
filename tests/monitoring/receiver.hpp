#pragma once
// A tiny HTTP receiver for tests: listens on 127.0.0.1:0 on its own thread,
// records every request body and answers with the next scripted status
// (200 once the script is used up).
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace drd::test {

class HttpReceiver {
 public:
  explicit HttpReceiver(std::deque<int> script = {}) : script_(std::move(script)) {
    namespace asio = boost::asio;
    acceptor_.open(asio::ip::tcp::v4());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind({asio::ip::make_address("127.0.0.1"), 0});
    acceptor_.listen();
    accept();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~HttpReceiver() {
    boost::asio::post(io_, [this] {
      boost::system::error_code ec;
      acceptor_.close(ec);
    });
    io_.stop();
    thread_.join();
  }
  unsigned short port() const { return acceptor_.local_endpoint().port(); }
  std::string url(const std::string& path = "/hook") const {
    return "http://127.0.0.1:" + std::to_string(port()) + path;
  }
  std::vector<std::string> bodies() const {
    std::lock_guard lk(mu_);
    return bodies_;
  }
  // Waits until at least n requests arrived.
  bool wait_for(std::size_t n, std::chrono::milliseconds timeout) const {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      if (bodies().size() >= n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return bodies().size() >= n;
  }

 private:
  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, boost::asio::ip::tcp::socket s) {
      if (ec) return;
      namespace http = boost::beast::http;
      boost::beast::flat_buffer buf;
      http::request<http::string_body> req;
      boost::system::error_code rec;
      http::read(s, buf, req, rec);
      if (!rec) {
        int status = 200;
        {
          std::lock_guard lk(mu_);
          bodies_.push_back(req.body());
          if (!script_.empty()) {
            status = script_.front();
            script_.pop_front();
          }
        }
        http::response<http::string_body> res{static_cast<http::status>(status), 11};
        res.body() = "ok";
        res.prepare_payload();
        http::write(s, res, rec);
      }
      accept();
    });
  }

  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_{io_};
  std::thread thread_;
  mutable std::mutex mu_;
  std::deque<int> script_;
  std::vector<std::string> bodies_;
};

}  // namespace drd::test
