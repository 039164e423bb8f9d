#!/usr/bin/python3
"""How much of a live stream gets through e2ecodec (encoder and decoder) in real time: a live test source
into the preview bin, a sink that drops frames more than 20 ms late, frames counted over 6 s.

  GST_PLUGIN_PATH=build/gst /usr/bin/python3 tools/live_rate.py 640 480 30 profile=live key-int-max=1
"""
import sys
import time

import gi

gi.require_version('Gst', '1.0')
from gi.repository import Gst  # noqa: E402

SECONDS = 6


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    Gst.init(None)
    w, h, fps = (int(a) for a in sys.argv[1:4])
    props = ' '.join(sys.argv[4:])
    pipe = Gst.parse_launch(f'videotestsrc is-live=true pattern=ball ! video/x-raw,width={w},height={h},framerate={fps}/1 ! '
                            f'e2ecodec {props} message=false ! fakesink name=sink sync=true max-lateness=20000000 '
                            'qos=true signal-handoffs=true')
    shown = [0]
    pipe.get_by_name('sink').connect('handoff', lambda *_: shown.__setitem__(0, shown[0] + 1))
    pipe.set_state(Gst.State.PLAYING)
    time.sleep(SECONDS)
    query = Gst.Query.new_latency()
    latency = query.parse_latency()[1] / 1e6 if pipe.query(query) else float('nan')
    pipe.set_state(Gst.State.NULL)
    print(f'{w}x{h}@{fps} {props}: rendered {shown[0]} of {SECONDS * fps} in {SECONDS} s, latency {latency:.0f} ms')


if __name__ == '__main__':
    main()
