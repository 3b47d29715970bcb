-- wrk script: POST a SipBegaran (SVPL XML) with a fresh message id on every request (tests/load/svpl.sh).
local template = io.open("tests/golden/svpl/sip-01-begaran.in.xml"):read("*a")
local counter = 0
local thread_id = 0
setup = function(thread)
  thread:set("thread_id", thread_id)
  thread_id = thread_id + 1
end
request = function()
  counter = counter + 1
  local id = string.format("LOAD-%d-%d-%d", thread_id, counter, math.random(1, 1000000000))
  local body = template:gsub("KOM1290%-2026%-000123", id)
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/xml",
    ["Authorization"] = "Bearer " .. os.getenv("NAVET_TOKEN"),
  }, body)
end
