// Package loadgen is a lean WebSocket load generator for wsd's benchmark.
//
// A worker process holds thousands of connections on a few epoll loops of
// its own (no goroutine per connection), sends prebuilt masked frames and
// parses server frames in place, so that the generator is never the
// bottleneck. Connections are spread over source addresses 127.0.0.2,
// 127.0.0.3, ... so that one process stays under the 20,000-file limit and
// the 4-tuples never run out. Every loop is bounded in count and time.
package loadgen
