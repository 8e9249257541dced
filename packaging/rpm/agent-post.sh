# shadowai-agent %post ($1: 1 = install, 2 = upgrade)
install -d -m 0700 /var/lib/shadowai
if [ "$1" -eq 1 ] && [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null 2>&1 || :
    systemctl preset shadowai-agent.service >/dev/null 2>&1 || :
fi
