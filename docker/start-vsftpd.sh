#!/usr/bin/env bash
# Starts a one-off vsftpd for the FTP tests on 127.0.0.1 (default port 2121, passive ports 30000-30100), detached,
# with a local user tes/tespass chrooted to its home (writable directory data/) and anonymous access
# (download from /pub, upload to /incoming). Needs root (vsftpd drops privileges itself).
# Usage: start-vsftpd.sh [DIR] [PORT]; writes DIR/vsftpd.pid.
set -euo pipefail
dir=${1:-/tmp/tesp-vsftpd}
port=${2:-2121}
command -v vsftpd >/dev/null || [ -x /usr/sbin/vsftpd ] || { echo "vsftpd not found: apt-get install vsftpd" >&2; exit 1; }
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "something already listens on 127.0.0.1:$port"
  exit 0
fi
mkdir -p "$dir"/{empty,anon/pub,anon/incoming,log}
if id tes >/dev/null 2>&1; then
  usermod -d "$dir/home-tes" tes
else
  useradd -m -d "$dir/home-tes" -s /bin/bash tes
fi
mkdir -p "$dir/home-tes/data"
echo 'tes:tespass' | chpasswd
grep -qx /bin/bash /etc/shells || echo /bin/bash >> /etc/shells
chown tes:tes "$dir/home-tes/data"
chmod 555 "$dir/home-tes"                 # vsftpd refuses a chroot root the user can write to
chown root:root "$dir/anon" && chmod 555 "$dir/anon"
chown ftp:ftp "$dir/anon/incoming" && chmod 1777 "$dir/anon/incoming"
cat > "$dir/vsftpd.conf" <<CONF
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=$port
background=NO
run_as_launching_user=NO
secure_chroot_dir=$dir/empty
xferlog_enable=YES
vsftpd_log_file=$dir/log/vsftpd.log
dual_log_enable=YES
xferlog_file=$dir/log/xferlog
local_enable=YES
write_enable=YES
local_umask=022
chroot_local_user=YES
pam_service_name=vsftpd
anonymous_enable=YES
anon_root=$dir/anon
no_anon_password=YES
anon_upload_enable=YES
anon_mkdir_write_enable=YES
anon_other_write_enable=YES
anon_umask=022
pasv_enable=YES
pasv_address=127.0.0.1
pasv_min_port=30000
pasv_max_port=30100
port_enable=YES
seccomp_sandbox=NO
CONF
setsid /usr/sbin/vsftpd "$dir/vsftpd.conf" >"$dir/log/stdout.log" 2>&1 </dev/null &
echo $! > "$dir/vsftpd.pid"
for _ in $(seq 1 40); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "vsftpd ready on 127.0.0.1:$port"; exit 0; fi
  sleep 0.25
done
echo "vsftpd did not start; see $dir/log" >&2
exit 1
