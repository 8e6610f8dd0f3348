// The official NATS C client (Debian: libnats-dev, pkg-config: libnats).
#include <nats/nats.h>
