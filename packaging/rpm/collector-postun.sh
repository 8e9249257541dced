# shadowai-collector %postun ($1: 1 = upgrade)
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart shadowai-collector.service >/dev/null 2>&1 || :
    fi
fi
