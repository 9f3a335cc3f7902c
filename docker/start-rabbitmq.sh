#!/usr/bin/env bash
# Makes sure a RabbitMQ answers on 127.0.0.1:5672 (guest/guest, which RabbitMQ allows from loopback) for the AMQP
# suites. The machines we run on start one before any session; a machine without it gets Debian's rabbitmq-server
# started detached. Idempotent: a broker that answers is left alone. Needs root.
# Usage: start-rabbitmq.sh [PORT]   (the port to check; a broker it starts listens on RabbitMQ's default, 5672)
set -euo pipefail
port=${1:-5672}
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }
if answers; then
  echo "RabbitMQ already answers on 127.0.0.1:$port"
  exit 0
fi
[ -x /usr/sbin/rabbitmq-server ] || { echo "rabbitmq-server not found: apt-get install rabbitmq-server" >&2; exit 1; }
/usr/sbin/rabbitmq-server -detached   # as the machines start it (its default port, 5672)
# The node takes some seconds to boot; await_startup returns once the app runs (or fails when the node died).
for _ in $(seq 1 60); do
  if rabbitmqctl -q await_startup --timeout 5 >/dev/null 2>&1 && answers; then
    echo "RabbitMQ answers on 127.0.0.1:$port"
    exit 0
  fi
  sleep 1
done
echo "RabbitMQ did not start on 127.0.0.1:$port within about 2 minutes; see /var/log/rabbitmq/" >&2
exit 1
