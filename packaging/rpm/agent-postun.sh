# shadowai-agent %postun ($1: 1 = upgrade): restart a running agent on the new binary.
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart shadowai-agent.service >/dev/null 2>&1 || :
    fi
fi
