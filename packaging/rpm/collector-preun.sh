# shadowai-collector %preun ($1: 0 = erase)
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now shadowai-collector.service >/dev/null 2>&1 || :
fi
