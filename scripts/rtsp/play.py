#!/usr/bin/env python3
"""play.py URL SECONDS: plays an RTSP URL with GStreamer's rtspsrc, over
UDP only (protocols=udp: no fallback to TCP interleaving), for SECONDS,
decoding both media of scripts/rtsp/server.py's stream, and prints
"video=N audio=M" (decoded video frames, decoded audio buffers). Exits 1
on an error from the pipeline.
"""
import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # noqa: E402

DECODERS = {"VP8": "rtpvp8depay ! vp8dec", "PCMU": "rtppcmudepay ! mulawdec"}


def main():
    url, seconds = sys.argv[1], float(sys.argv[2])
    Gst.init(None)
    pipeline = Gst.Pipeline.new("play")
    src = Gst.ElementFactory.make("rtspsrc")
    src.set_property("location", url)
    src.set_property("protocols", "udp")
    src.set_property("latency", 100)
    pipeline.add(src)
    counts = {"video": 0, "audio": 0}

    def count(kind):
        def probe(pad, info):
            counts[kind] += 1
            return Gst.PadProbeReturn.OK

        return probe

    def pad_added(_src, pad):
        enc = pad.get_current_caps().get_structure(0).get_string("encoding-name")
        if enc not in DECODERS:
            return
        kind = "video" if enc == "VP8" else "audio"
        sink_bin = Gst.parse_bin_from_description(DECODERS[enc] + " ! fakesink sync=false name=sink", True)
        pipeline.add(sink_bin)
        sink_bin.sync_state_with_parent()
        sink_bin.get_by_name("sink").get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, count(kind))
        pad.link(sink_bin.get_static_pad("sink"))

    src.connect("pad-added", pad_added)
    loop = GLib.MainLoop()
    failed = []

    def on_message(_bus, msg):
        if msg.type == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            failed.append(f"{err.message} ({dbg})")
            loop.quit()
        elif msg.type == Gst.MessageType.EOS:
            loop.quit()

    bus = pipeline.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    pipeline.set_state(Gst.State.PLAYING)
    GLib.timeout_add(int(seconds * 1000), loop.quit)
    loop.run()
    pipeline.set_state(Gst.State.NULL)
    print(f"video={counts['video']} audio={counts['audio']}", flush=True)
    if failed:
        print("error: " + failed[0], file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
