"""ipvsadm command texts that both the importer's unit tests and the VM's check against the
real ipvsadm use: what the importer replays must be what ipvsadm does on the kernel."""

from __future__ import annotations

# a hand-written shell script: long options, bundled flags, comments, edits and deletions
SCRIPT = """\
#!/bin/sh
# web farm, set up by hand years ago
ipvsadm -C
ipvsadm -A -t 192.0.2.60:80 -s rr          # the service
/sbin/ipvsadm --add-server --tcp-service 192.0.2.60:80 --real-server 198.51.100.61 \
--gatewaying --weight 2
ipvsadm -a -t 192.0.2.60:80 -r 198.51.100.62:80 -g -w 1 -x 1000 -y 800
ipvsadm -a -t 192.0.2.60:80 -r 198.51.100.63 --masquerading --u-threshold=50
ipvsadm -At 192.0.2.61:25 -s lc -p
ipvsadm -at 192.0.2.61:25 -r 198.51.100.64:25 -i
ipvsadm -A --udp-service 192.0.2.62:53 --scheduler wlc --persistent 120
ipvsadm -a -u 192.0.2.62:53 -r 198.51.100.65:5353 -m -w5
ipvsadm -E -t 192.0.2.60:80 -s wlc
ipvsadm -e -t 192.0.2.60:80 -r 198.51.100.62:80 -g -w 4 -x 1000 -y 800
ipvsadm -D -u 192.0.2.62:53
ipvsadm -A -u 192.0.2.62:53 -s sed
ipvsadm -a -u 192.0.2.62:53 -r 198.51.100.66:53 -m
ipvsadm -d -u 192.0.2.62:53 -r 198.51.100.66:53
"""


# -E and -e replace every attribute with ipvsadm's defaults (wlc, no persistence, -g, -w 1,
# no thresholds); DR servers of an address service take the service port, of a mark keep it
EDITS = """\
-A -t 192.0.2.1:80 -s rr -p 100 -M 255.255.255.0
-a -t 192.0.2.1:80 -r 198.51.100.1:8080 -m -w 7 -x 10 -y 5
-E -t 192.0.2.1:80
-e -t 192.0.2.1:80 -r 198.51.100.1:8080 -m
-a -t 192.0.2.1:80 -r 198.51.100.2:8080 -g -w 3
-A -t 192.0.2.2:80 -s sh -b sh-port
-E -t 192.0.2.2:80 -s rr
-A -f 3 -s rr
-a -f 3 -r 198.51.100.3:8080 -g
"""
