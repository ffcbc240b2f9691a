/**
 * The grab scripts' return codes (lua/grab-6.lua, and take-4.lua's, which reuse two of them), in a
 * module of their own so grab.ts and sub-pools.ts (which grab.ts imports) both read them.
 */
export enum GrabCode {
  /** No such campaign (or pool); nothing was written. */
  NoSuchCampaign = -1,
  Won = 1,
  AlreadyGrabbed = 2,
  /** grab-6.lua: nothing left now. take-4.lua answers it as DRY: nothing released is left in that pool. */
  SoldOut = 3,
  NotStarted = 4,
  /** Closed or expired (take-4.lua too). */
  Ended = 5,
  Forbidden = 6,
  /** Sub-pools: the home pool is dry and the user is now reserved for this request. */
  Failover = 7,
  /** Sub-pools: another request of the user is failing over; ask again. */
  Pending = 8,
}
