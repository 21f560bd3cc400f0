#!/usr/bin/env python3
"""server.py ADDR PORT: a GStreamer RTSP server (gst-rtsp-server, Debian's
gir1.2-gst-rtsp-server-1.0) serving rtsp://ADDR:PORT/test, a live test
stream with two media: VP8 video (160x120, 25 fps, payload 96) and G.711
mu-law audio (8 kHz, payload 0). Each client gets its own pipeline, so its
own server ports. It prints "ready" once it listens, and runs until killed.
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

LAUNCH = (
    "( videotestsrc is-live=true ! video/x-raw,width=160,height=120,framerate=25/1"
    " ! vp8enc deadline=1 ! rtpvp8pay name=pay0 pt=96"
    "  audiotestsrc is-live=true ! audio/x-raw,rate=8000,channels=1"
    " ! mulawenc ! rtppcmupay name=pay1 pt=0 )"
)


def main():
    addr, port = sys.argv[1], sys.argv[2]
    Gst.init(None)
    server = GstRtspServer.RTSPServer(address=addr, service=port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(LAUNCH)
    factory.set_shared(False)
    # UDP only: a client that cannot get its media over UDP fails instead
    # of quietly falling back to TCP interleaving.
    factory.set_protocols(GstRtsp.RTSPLowerTrans.UDP)
    server.get_mount_points().add_factory("/test", factory)
    if server.attach(None) == 0:
        sys.exit(f"server.py: cannot listen on {addr}:{port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
