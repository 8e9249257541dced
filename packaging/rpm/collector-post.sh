# shadowai-collector %post ($1: 1 = install, 2 = upgrade)
if ! getent passwd shadowai >/dev/null; then
    systemd-sysusers /usr/lib/sysusers.d/shadowai-collector.conf >/dev/null 2>&1 ||
        useradd --system --user-group --home-dir /var/lib/shadowai-collector \
            --no-create-home --shell /sbin/nologin shadowai
fi
install -d -m 0700 -o shadowai -g shadowai /var/lib/shadowai-collector
chown root:shadowai /etc/shadowai/collector.toml
chmod 0640 /etc/shadowai/collector.toml
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        systemctl preset shadowai-collector.service >/dev/null 2>&1 || :
    fi
fi
