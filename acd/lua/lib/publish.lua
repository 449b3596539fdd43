-- Every agent change is published in the script that makes it, so that the other ACD nodes (and
-- the desktops) hear of the changes in the order Redis made them. ("now" is a float's repr, kept
-- as written: cjson would round it to 14 digits.)
local function published(agent, uid, now, owner)
  redis.call('PUBLISH', '@EVENTS@', '{"type": "agent", "agent": ' .. cjson.encode(agent) ..
    ', "state": "reserved", "reason": "", "call": ' .. cjson.encode(uid) .. ', "at": ' .. now ..
    ', "node": ' .. cjson.encode(owner) .. '}')
end
