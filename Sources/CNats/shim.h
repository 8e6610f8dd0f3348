// The official NATS C client (Debian: libnats-dev, pkg-config: libnats).
#include <nats/nats.h>

// For the socket loop that drives libnats through its external event-loop API.
#ifdef __linux__
#include <sys/epoll.h>
#include <sys/eventfd.h>
#endif
