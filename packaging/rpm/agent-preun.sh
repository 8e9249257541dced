# shadowai-agent %preun ($1: 0 = erase): stop and disable the agent.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now shadowai-agent.service >/dev/null 2>&1 || :
fi
