"""Real TLS/QUIC/DNS endpoints for agent/decode's namespace capture test.

Usage: netns_helper.py MODE ARGS...
  tls-server CERT KEY ADDR          TLS server on ADDR:443 (prints "ready")
  quic-server CERT KEY ADDR         aioquic server on ADDR:4433 (prints "ready")
  tls-client ADDR SNI               Python ssl client
  quic-client ADDR SNI              aioquic client (ALPN h3)
  dns-client ADDR NAME              one UDP DNS query (A) to ADDR:53
"""
import asyncio
import socket
import ssl
import struct
import sys
import threading


def tls_server(cert, key, addr):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, 443))
    s.listen(16)
    print("ready", flush=True)

    def handle(c):
        try:
            t = ctx.wrap_socket(c, server_side=True)
            t.recv(4096)
            t.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            t.close()
        except Exception:
            c.close()

    while True:
        c, _ = s.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()


def tls_client(addr, sni):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((addr, 443), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname=sni) as t:
            t.sendall(b"GET / HTTP/1.1\r\nHost: " + sni.encode() + b"\r\n\r\n")
            t.recv(4096)


async def quic_server(cert, key, addr):
    from aioquic.asyncio import serve
    from aioquic.quic.configuration import QuicConfiguration

    cfg = QuicConfiguration(is_client=False, alpn_protocols=["h3"])
    cfg.load_cert_chain(cert, key)
    await serve(addr, 4433, configuration=cfg)
    print("ready", flush=True)
    await asyncio.Future()


async def quic_client(addr, sni):
    from aioquic.asyncio import connect
    from aioquic.quic.configuration import QuicConfiguration

    cfg = QuicConfiguration(is_client=True, alpn_protocols=["h3"], verify_mode=ssl.CERT_NONE, server_name=sni)
    async with connect(addr, 4433, configuration=cfg) as c:
        await c.ping()


def dns_client(addr, name):
    q = struct.pack(">HHHHHH", 0x5151, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00" + struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(q, (addr, 53))
    s.close()


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "tls-server":
        tls_server(*args)
    elif mode == "quic-server":
        asyncio.run(quic_server(*args))
    elif mode == "tls-client":
        tls_client(*args)
    elif mode == "quic-client":
        asyncio.run(asyncio.wait_for(quic_client(*args), 10))
    elif mode == "dns-client":
        dns_client(*args)
    else:
        raise SystemExit("unknown mode " + mode)


if __name__ == "__main__":
    main()
